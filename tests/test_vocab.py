import numpy as np
import pytest

from rnnedge.errors import ConfigError, UnknownCharacterError
from rnnedge.vocab import CharVocab


def test_roundtrip():
    v = CharVocab.from_text("hello world")
    assert v.chars == " dehlorw"
    ids = v.encode("world hello")
    assert ids.dtype == np.int64
    assert v.decode(ids) == "world hello"


def test_unknown_character_names_char_and_position():
    v = CharVocab.from_text("abc")
    with pytest.raises(UnknownCharacterError, match=r"'z' at position 3.*'Q' at position 5"):
        v.encode("abczaQ")
    assert v.decode(v.encode("abczaQ", on_unknown="skip")) == "abca"


def test_bad_vocab_and_ids():
    with pytest.raises(ConfigError):
        CharVocab("")
    with pytest.raises(ConfigError):
        CharVocab("aa")
    with pytest.raises(UnknownCharacterError, match="outside the vocabulary"):
        CharVocab("ab").decode([0, 5])
