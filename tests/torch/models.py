"""Real models with tiny random configs (no weight downloads): transformers and torch.nn built-ins.

``models()`` returns ``Case(name, model, inputs)``, float64 and in eval mode. A transformers
model is wrapped so that it returns its main tensor (``last_hidden_state`` or ``logits``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn


class Case(NamedTuple):
    name: str
    make: Callable[[], Any]  # -> (model, inputs)


class _Main(nn.Module):
    """A transformers model returning one tensor (``key`` of its output), so that every tool reads it alike."""

    def __init__(self, model: nn.Module, key: str = "last_hidden_state") -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, *args: Any) -> Any:
        return getattr(self.model(*args), self.key)


class _RNN(nn.Module):
    """An LSTM/GRU returning its output sequence only (the final states are a tuple)."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class _MHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, dropout=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


def _ids(B: int = 2, T: int = 8, vocab: int = 50) -> torch.Tensor:
    return torch.randint(1, vocab, (B, T), generator=torch.Generator().manual_seed(0))


def _embeds(B: int = 2, T: int = 8, d: int = 32) -> torch.Tensor:
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


_BERTISH = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64)  # fmt: skip
_LLAMAISH = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=64, max_position_embeddings=64)  # fmt: skip


class _Embeds(nn.Module):
    """A transformers model called with ``inputs_embeds=`` (float, differentiated)."""

    def __init__(self, model: nn.Module, key: str = "last_hidden_state") -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(inputs_embeds=x), self.key)


def _hf_embeds(config_name: str, model_name: str, d: int = 32, **cfg: Any) -> Callable[[], Any]:
    def make():
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_name)(**cfg)
        model = _Embeds(getattr(transformers, model_name)(config)).double().eval()
        return model, (_embeds(d=d),)

    return make


def _hf_ids(config_name: str, model_name: str, **cfg: Any) -> Callable[[], Any]:
    def make():
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_name)(**cfg)
        model = _Main(getattr(transformers, model_name)(config)).double().eval()
        return model, (_ids(),)

    return make


def _hf_pixels(config_name: str, model_name: str, shape: tuple, key: str = "last_hidden_state", **cfg: Any):
    def make():
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_name)(**cfg)
        model = _Main(getattr(transformers, model_name)(config), key).double().eval()
        return model, (torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64),)

    return make


def _builtin(make_module: Callable[[], nn.Module], shape: tuple) -> Callable[[], Any]:
    def make():
        torch.manual_seed(0)
        return make_module().double().eval(), (torch.randn(*shape, dtype=torch.float64),)

    return make


_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
            patch_size=4, num_channels=3)  # fmt: skip


def models() -> list[Case]:
    return [
        Case("bert", _hf_embeds("BertConfig", "BertModel", **_BERTISH)),
        Case("bert_ids", _hf_ids("BertConfig", "BertModel", **_BERTISH)),
        Case("distilbert", _hf_embeds("DistilBertConfig", "DistilBertModel", vocab_size=50, dim=32, n_layers=2,
                                      n_heads=4, hidden_dim=64, max_position_embeddings=64)),
        Case("roberta", _hf_embeds("RobertaConfig", "RobertaModel", **_BERTISH)),
        Case("albert", _hf_embeds("AlbertConfig", "AlbertModel", d=16, embedding_size=16, **_BERTISH)),
        Case("electra", _hf_embeds("ElectraConfig", "ElectraModel", d=16, embedding_size=16, **_BERTISH)),
        Case("gpt2", _hf_embeds("GPT2Config", "GPT2Model", vocab_size=50, n_embd=32, n_layer=2, n_head=4,
                                n_positions=64)),
        Case("gpt2_ids", _hf_ids("GPT2Config", "GPT2Model", vocab_size=50, n_embd=32, n_layer=2, n_head=4,
                                 n_positions=64)),
        Case("llama", _hf_embeds("LlamaConfig", "LlamaModel", **_LLAMAISH)),
        Case("mistral", _hf_embeds("MistralConfig", "MistralModel", **_LLAMAISH)),
        Case("qwen2", _hf_embeds("Qwen2Config", "Qwen2Model", **_LLAMAISH)),
        Case("t5_encoder", _hf_embeds("T5Config", "T5EncoderModel", vocab_size=50, d_model=32, d_kv=8, d_ff=64,
                                      num_layers=2, num_heads=4)),
        Case("vit", _hf_pixels("ViTConfig", "ViTModel", (2, 3, 16, 16), **_VIT)),
        Case("nn_transformer_encoder_layer",
             _builtin(lambda: nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), (2, 8, 32))),
        Case("nn_transformer_encoder", _builtin(lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), 2, enable_nested_tensor=False),
            (2, 8, 32))),
        Case("nn_lstm", _builtin(lambda: _RNN(nn.LSTM(8, 16, num_layers=2, batch_first=True)), (2, 5, 8))),
        Case("nn_gru", _builtin(lambda: _RNN(nn.GRU(8, 16, batch_first=True, bidirectional=True)), (2, 5, 8))),
        Case("nn_multihead_attention", _builtin(_MHA, (2, 6, 8))),
    ]  # fmt: skip
