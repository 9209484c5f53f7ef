"""Adapter: PyTorch word_language_model-shaped LMs (embedding -> nn.LSTM / nn.GRU / nn.RNN -> linear decoder).

The shape of pytorch/examples' `word_language_model/model.py` RNNModel (`encoder`, `rnn`, `decoder`,
`drop`; optionally `decoder.weight = encoder.weight`), with `batch_first` either way, any number of
layers and dropout (a no-op in eval). torch holds the state as (h, c) [layers, batch, hidden]; the
graph carries each layer's rows as its own batch-first state `<layer>.h` (and `<layer>.c`) [batch,
hidden], so the drift report shows each layer (`to_torch_state` / `from_torch_state` convert).

T > 1 runs the fused module (the parallel graph becomes ONNX LSTM / GRU / RNN ops, one per layer);
T == 1 runs each layer's explicit cell with the same weights (MatMul + elementwise), as rnnedge's own
classic mixers do. The logits are the decoder's outputs (the example's log_softmax only shifts each row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rnnedge.errors import ConfigError
from rnnedge.models.spec import StateSpec

RNN_TYPES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
_GATES = {4: "LSTM", 3: "GRU", 1: "RNN"}
_EMBED_NAMES = ("encoder", "embedding", "embed", "emb", "wte", "token_emb")
_DECODER_NAMES = ("decoder", "head", "lm_head", "fc", "out", "linear", "proj")


class WordLM(nn.Module):
    """forward(ids (B, T), states: per layer h [, c] each (B, H)) -> (logits (B, T, V), states)."""

    def __init__(self, embedding: nn.Embedding, rnn: nn.RNNBase, decoder: nn.Linear) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding) or not isinstance(decoder, nn.Linear):
            raise ConfigError("word-lm needs an nn.Embedding and an nn.Linear decoder")
        if not isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)):
            raise ConfigError(f"word-lm takes nn.LSTM, nn.GRU or nn.RNN, not {type(rnn).__name__}")
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ConfigError("word-lm: a bidirectional or projected RNN is not a left-to-right LM")
        if rnn.input_size != embedding.embedding_dim or decoder.in_features != rnn.hidden_size:
            raise ConfigError(
                f"word-lm sizes do not chain: embedding {embedding.embedding_dim} -> rnn {rnn.input_size}/"
                f"{rnn.hidden_size} -> decoder {decoder.in_features}"
            )
        self.encoder, self.rnn, self.decoder = embedding, rnn, decoder
        self.lstm = isinstance(rnn, nn.LSTM)
        self.layers, self.hidden = rnn.num_layers, rnn.hidden_size

    @property
    def rnn_type(self) -> str:
        if isinstance(self.rnn, nn.RNN):
            return "RNN_TANH" if self.rnn.nonlinearity == "tanh" else "RNN_RELU"
        return type(self.rnn).__name__

    def state_specs(self) -> list[StateSpec]:
        """Per layer `<l>.h` (and `<l>.c` for an LSTM), each ['batch', hidden]."""
        names = ("h", "c") if self.lstm else ("h",)
        return [StateSpec(f"{layer}.{n}", ("batch", self.hidden)) for layer in range(self.layers) for n in names]

    def to_torch_state(self, states: Sequence[torch.Tensor]) -> Any:
        """Per-layer states -> what torch's module takes: (h, c) or h, each (layers, B, H)."""
        per = 2 if self.lstm else 1
        h = torch.stack([states[i * per] for i in range(self.layers)])  # (L, B, H)
        if not self.lstm:
            return h.contiguous()
        return h.contiguous(), torch.stack([states[i * 2 + 1] for i in range(self.layers)]).contiguous()

    def from_torch_state(self, hidden: Any) -> tuple[torch.Tensor, ...]:
        """torch's (h, c) / h, each (layers, B, H) -> the per-layer states."""
        if not self.lstm:
            return tuple(hidden.unbind(0))
        h, c = hidden
        return tuple(t for pair in zip(h.unbind(0), c.unbind(0), strict=True) for t in pair)

    def _cell(self, layer: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """One layer, one token, plain MatMul + elementwise. x: (B, in), h, c: (B, H)."""
        r = self.rnn
        gi = x @ getattr(r, f"weight_ih_l{layer}").t()  # (B, G*H)
        gh = h @ getattr(r, f"weight_hh_l{layer}").t()  # (B, G*H)
        if r.bias:
            gi = gi + getattr(r, f"bias_ih_l{layer}")
            gh = gh + getattr(r, f"bias_hh_l{layer}")
        if isinstance(r, nn.LSTM):
            i, f, g, o = (gi + gh).chunk(4, dim=-1)  # (B, H) each, torch's [i, f, g, o]
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
            return torch.sigmoid(o) * torch.tanh(c_new), c_new
        if isinstance(r, nn.GRU):
            i_r, i_z, i_n = gi.chunk(3, dim=-1)  # (B, H) each, torch's [r, z, n]
            h_r, h_z, h_n = gh.chunk(3, dim=-1)
            reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)  # (B, H)
            n = torch.tanh(i_n + reset * h_n)  # (B, H)
            return ((1 - update) * n + update * h,)
        act = torch.tanh if r.nonlinearity == "tanh" else torch.relu
        return (act(gi + gh),)

    def forward(
        self, ids: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = self.encoder(ids)  # (B, T, E)
        if ids.shape[1] == 1:
            per = 2 if self.lstm else 1
            out: list[torch.Tensor] = []
            y = x[:, 0]  # (B, E)
            for layer in range(self.layers):
                c = states[layer * per + 1] if self.lstm else None
                new = self._cell(layer, y, states[layer * per], c)
                out.extend(new)
                y = new[0]  # (B, H)
            return self.decoder(y).unsqueeze(1), tuple(out)  # (B, 1, V)
        if not self.rnn.batch_first:
            x = x.transpose(0, 1)  # (T, B, E)
        y, hidden = self.rnn(x, self.to_torch_state(states))  # (T, B, H) or (B, T, H)
        if not self.rnn.batch_first:
            y = y.transpose(0, 1)  # (B, T, H)
        return self.decoder(y), self.from_torch_state(hidden)  # (B, T, V)

    def products(self) -> tuple[tuple[str, int, int], ...]:
        """Weight products of one token: each layer's input and hidden products, then the decoder."""
        gates = {"LSTM": 4, "GRU": 3}.get(type(self.rnn).__name__, 1) * self.hidden
        prods = [(f"rnn.ih{i}", self.rnn.input_size if i == 0 else self.hidden, gates) for i in range(self.layers)]
        prods += [(f"rnn.hh{i}", self.hidden, gates) for i in range(self.layers)]
        return (*prods, ("decoder", self.hidden, self.decoder.out_features))


def _child(module: nn.Module, names: Sequence[str], kind: type) -> nn.Module | None:
    for name in names:
        m = getattr(module, name, None)
        if isinstance(m, kind):
            return m
    found = [m for m in module.modules() if isinstance(m, kind)]
    return found[0] if len(found) == 1 else None


def from_module(module: nn.Module) -> WordLM:
    """Adapt a word_language_model-shaped module (its own class): its embedding, RNN and decoder, shared."""
    if isinstance(module, WordLM):
        return module
    emb = _child(module, _EMBED_NAMES, nn.Embedding)
    rnn = _child(module, ("rnn", "lstm", "gru"), nn.RNNBase)
    dec = _child(module, _DECODER_NAMES, nn.Linear)
    if dec is None:  # several Linears: the one that maps the hidden size to the vocabulary
        want = (getattr(rnn, "hidden_size", -1), getattr(emb, "num_embeddings", -1))
        dec = next(
            (m for m in module.modules() if isinstance(m, nn.Linear) and (m.in_features, m.out_features) == want), None
        )
    if emb is None or rnn is None or dec is None:
        missing = [
            n for n, m in (("nn.Embedding", emb), ("nn.LSTM/GRU/RNN", rnn), ("decoder nn.Linear", dec)) if m is None
        ]
        raise ConfigError(f"{type(module).__name__} is not word_language_model-shaped: no single {', '.join(missing)}")
    return WordLM(emb, rnn, dec)  # type: ignore[arg-type]


def from_state_dict(
    weights: Mapping[str, torch.Tensor], rnn_type: str | None = None, batch_first: bool = False
) -> WordLM:
    """Rebuild the LM from a state_dict (keys as pytorch/examples writes them: encoder.weight,
    rnn.weight_ih_l0 ..., decoder.weight/bias; other prefixes work too). The RNN type is read off the
    gate count; `rnn_type` ('RNN_TANH' | 'RNN_RELU', or any of RNN_TYPES) says which nonlinearity a plain
    RNN has (default tanh). A missing decoder.weight means the decoder is tied to the embedding."""
    keys = [k for k in weights if k.endswith("weight_ih_l0")]
    if len(keys) != 1:
        raise ConfigError(f"the weights hold {len(keys)} RNNs (keys ending in weight_ih_l0); word-lm needs exactly one")
    pre = keys[0][: -len("weight_ih_l0")]
    layers = sum(1 for k in weights if k.startswith(pre + "weight_ih_l") and not k.endswith("_reverse"))
    w_hh = weights[pre + "weight_hh_l0"]
    hidden, inp = int(w_hh.shape[1]), int(weights[keys[0]].shape[1])
    gates = int(w_hh.shape[0]) // hidden
    found = _GATES.get(gates)
    if found is None or any(k.endswith("_reverse") for k in weights if k.startswith(pre)):
        raise ConfigError(
            f"{pre}weight_hh_l0 has {gates} gates per unit (or a reverse direction); not an LSTM/GRU/RNN LM"
        )
    kind = rnn_type or found
    if (
        kind not in RNN_TYPES
        or (kind.startswith("RNN") != (found == "RNN"))
        or (kind in ("LSTM", "GRU") and kind != found)
    ):
        raise ConfigError(f"--rnn-type {kind} does not match the weights ({found}: {gates} gate(s) per unit)")
    bias = (pre + "bias_ih_l0") in weights
    others = {k: v for k, v in weights.items() if not k.startswith(pre)}
    emb_key = _pick(others, lambda v: v.dim() == 2 and v.shape[1] == inp, _EMBED_NAMES, "embedding")
    vocab = int(others[emb_key].shape[0])
    rest = {k: v for k, v in others.items() if k != emb_key}
    dec_keys = [
        k for k, v in rest.items() if k.endswith("weight") and v.dim() == 2 and tuple(v.shape) == (vocab, hidden)
    ]
    if len(dec_keys) > 1:
        dec_keys = [k for k in dec_keys if any(n in k for n in _DECODER_NAMES)]
    if len(dec_keys) > 1:
        raise ConfigError(f"cannot tell the decoder weight among {dec_keys[:4]}")
    if not dec_keys and inp != hidden:
        raise ConfigError(f"no decoder weight [{vocab}, {hidden}] and the embedding ({inp}) cannot be tied to it")
    bias_key = dec_keys[0][: -len("weight")] + "bias" if dec_keys else None
    if bias_key not in rest:  # a tied decoder keeps its own bias
        bias_key = next((k for k, v in rest.items() if k.endswith("bias") and tuple(v.shape) == (vocab,)), None)
    if kind in ("LSTM", "GRU"):
        rnn: nn.RNNBase = getattr(nn, kind)(inp, hidden, layers, bias=bias, batch_first=batch_first)
    else:
        nonlin = "relu" if kind == "RNN_RELU" else "tanh"
        rnn = nn.RNN(inp, hidden, layers, nonlinearity=nonlin, bias=bias, batch_first=batch_first)
    lm = WordLM(nn.Embedding(vocab, inp), rnn, nn.Linear(hidden, vocab, bias=bias_key is not None))
    sd = {"encoder.weight": others[emb_key]}
    sd.update({"rnn." + k[len(pre) :]: v for k, v in weights.items() if k.startswith(pre)})
    if dec_keys:
        sd["decoder.weight"] = rest[dec_keys[0]]
    else:
        lm.decoder.weight = lm.encoder.weight  # tied: the checkpoint stores the matrix once
    if bias_key is not None:
        sd["decoder.bias"] = rest[bias_key]
    missing, unexpected = lm.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k == "decoder.weight" and not dec_keys)]
    if missing or unexpected:
        raise ConfigError(f"word-lm weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return lm.eval()


def _pick(weights: Mapping[str, torch.Tensor], ok: Any, names: Sequence[str], what: str) -> str:
    cands = [k for k, v in weights.items() if k.endswith("weight") and ok(v)]
    named = [k for k in cands if any(n in k for n in names)]
    if len(named) == 1:
        return named[0]
    if len(cands) == 1:
        return cands[0]
    raise ConfigError(f"cannot tell the {what} weight among {cands[:4] or 'no candidates'}")


def export_word_lm(model: nn.Module | Mapping[str, torch.Tensor], *, tokenizer: Any, out: Any, **options: Any) -> Any:
    """Export a word_language_model-shaped module (or its state_dict) with rnnedge.export.

    `options` go to rnnedge.export (opset, max_seq_len, atol, simplify, ort_format) and, for a state_dict,
    `rnn_type` / `batch_first` go to from_state_dict."""
    from rnnedge.byom.api import export

    rebuild = {k: options.pop(k) for k in ("rnn_type", "batch_first") if k in options}
    lm = from_module(model) if isinstance(model, nn.Module) else from_state_dict(model, **rebuild)
    info = {"adapter": "word-lm", "rnn_type": lm.rnn_type, "layers": lm.layers, "hidden": lm.hidden}
    return export(
        lm,
        states=lm.state_specs(),
        tokenizer=tokenizer,
        out=out,
        arch=f"word-lm-{lm.rnn_type.lower().replace('_', '-')}",
        products=lm.products(),
        source={**info, **options.pop("source", {})},
        **options,
    )
