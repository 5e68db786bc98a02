"""Prefix tuning (Li & Liang, 2021, https://arxiv.org/abs/2101.00190) for speech encoder-decoders.

Every targeted self-attention layer gets `length` learned key and value vectors that each query attends
to before the real sequence. Decoder self-attention is always prefixed; encoder self-attention too with
`prefix_encoder` (as in the paper, which prefixes every layer), and always in encoder-only models. PEFT's
own prefix tuning passes them as `past_key_values`, which crashes on Whisper (it asks for `input_ids`) and
shifts the decoder's positions.

Three ways in, chosen by how the family's attention is written (`route_of`):
- `interface` (Whisper, wav2vec2, HuBERT): their attention calls a function looked up by name in
  transformers' `AttentionInterface`. Each prefixed module gets a private config naming ours, which
  concatenates the prefix after the KV cache and widens the mask. The prefix is never cached, so positions
  and `generate` are untouched.
- `hooks` (SpeechT5, whose attention is written by hand with a relative position bias): forward hooks on
  `k_proj`/`v_proj` prepend the prefix and a pre-hook widens the mask and position bias, whenever the
  layer's cache is empty. The decoder cache then starts with the prefix, and a pre-hook on any prenet that
  derives positions from the cache length (SpeechT5's text decoder) shows it the length without the prefix.
- `relative` (FastSpeech 2's Conformer attention, `linear_q/k/v/out` with Transformer-XL relative positions):
  its forward checks the key padding mask against the sequence length and builds the positional scores for
  the sequence only, so neither hooks nor the interface can widen it; the module's forward is replaced by
  `relative_prefixed_attention`, the same computation over [prefix; sequence] (see there for the prefix's
  positional term). No cache: the model is non-autoregressive and every layer is non-causal.

Which self-attention is the decoder's: modules flagged `is_decoder` (Whisper, SpeechT5), else those inside
the model's decoder stack (`get_decoder()`: FastSpeech 2's mel decoder; the whole model when encoder-only).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from speechpeft.adapters import routing
from speechpeft.adapters.base import AdapterOptions, own_files_method, register_method
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError

INTERFACE_NAME = "speechpeft_prefix"
SLOT = "speechpeft_prefix"  # the ParameterDict on each prefixed attention module, keyed by adapter name
BANK_PATH = "speechpeft_bank_path"  # on a module the bank routes: its path, where the route's adapters keep prefixes
ADAPTER = "default"
Prefix = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # keys, values, valid positions (see `_prefix_of`)


@dataclass(frozen=True)
class PrefixPlan:
    """Which attention modules get a prefix, and how the family's attention lets it in."""

    modules: tuple[str, ...]
    route: str  # "interface", "hooks" or "relative"


def route_of(module: torch.nn.Module) -> str | None:
    """How a prefix gets into this attention module (see the module docstring); None when it is no attention
    prefix tuning knows."""
    if hasattr(module, "linear_k") and hasattr(module, "pos_bias_u"):
        return "relative"
    if hasattr(module, "k_proj"):
        return "interface" if hasattr(module, "config") else "hooks"
    return None


def key_projection(module: torch.nn.Module) -> torch.nn.Module:
    """The attention's key projection, unwrapped from a LoRA or bank layer: a prefix is as wide as its output."""
    projection = module.linear_k if route_of(module) == "relative" else module.k_proj
    return getattr(projection, "base_layer", projection)


def plan(backbone: FrozenBackbone, encoder: bool) -> PrefixPlan:
    """Self-attention modules named by the spec: the decoder's, and the encoder's on request or when the
    model has no decoder (wav2vec2, HuBERT, Whisper's classifier).

    Raises InputError when the spec's names match no attention module this file can route a prefix into."""
    suffixes = backbone.spec.target_modules.get("prefix", ())
    found = [(name, module) for name, module in backbone.model.named_modules()
             if name.rsplit(".", 1)[-1] in suffixes and route_of(module) is not None]  # fmt: skip
    if not found:
        raise InputError(f"prefix tuning found no self-attention to prefix in this {backbone.spec.family} model")
    decoder = _decoder_attention(backbone.model, found)
    return PrefixPlan(tuple(n for n, _ in found if encoder or n in decoder), route_of(found[0][1]))


def _decoder_attention(model: torch.nn.Module, found: list[tuple[str, torch.nn.Module]]) -> set[str]:
    """The names of `found` that are the decoder's: flagged `is_decoder`, else inside `model.get_decoder()`
    (transformers' lookup: a `decoder` attribute, or the model itself when it has none)."""
    flagged = {name for name, module in found if getattr(module, "is_decoder", False)}
    if flagged:
        return flagged
    inside = {id(m) for m in getattr(model, "get_decoder", lambda: model)().modules()}
    return {name for name, module in found if id(module) in inside}


def _prefix_of(module: torch.nn.Module, batch: int, dtype: torch.dtype) -> Prefix | None:
    """The prefix keys and values for `batch` rows, [batch, length, d_model] each, and which positions each row
    may attend ([batch, length] bool, None when all): the bank's per-sample ones while a route is active (rows of
    a shorter or missing prefix are padded and masked), else the active trained adapter's. None when disabled."""
    bank_path = getattr(module, BANK_PATH, None)
    route = routing.active()
    if bank_path is not None and route is not None:
        return route.plan(bank_path, f"prefix {dtype}", batch, partial(_routed_prefix, bank_path, dtype))
    active = getattr(module, "speechpeft_active", None)
    if active is None:
        return None
    keys, values = getattr(module, SLOT)[active].to(dtype)
    return keys.expand(batch, -1, -1), values.expand(batch, -1, -1), None


def _routed_prefix(path: str, dtype: torch.dtype, route: routing.Route, repeats: int) -> Prefix | None:
    """The route's prefixes at `path`: one shared prefix when uniform, else padded to the longest and masked."""
    prefixes = route.entries("prefix", path)
    present = [p for p in prefixes if p is not None]
    if not present:
        return None
    rows = len(prefixes) * repeats
    if route.uniform():
        keys, values = present[0].to(dtype)
        return keys.expand(rows, -1, -1), values.expand(rows, -1, -1), None
    longest, width = max(p.shape[1] for p in present), present[0].shape[2]
    padded = present[0].new_zeros(len(prefixes), 2, longest, width, dtype=dtype)
    valid = torch.zeros(len(prefixes), longest, dtype=torch.bool, device=padded.device)
    for row, prefix in enumerate(prefixes):
        if prefix is not None:
            padded[row, :, : prefix.shape[1]], valid[row, : prefix.shape[1]] = prefix.to(dtype), True
    padded, valid = padded.repeat_interleave(repeats, 0), valid.repeat_interleave(repeats, 0)
    return padded[:, 0], padded[:, 1], valid


def _widen_mask(
    mask: torch.Tensor | None,
    length: int,
    query: int,
    keys: int,
    causal: bool,
    like: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The attention mask over [prefix; keys]: every query sees the whole prefix, or the positions `valid`
    ([batch, length] bool) allows its row."""
    if mask is None:
        if not (causal and query > 1) and valid is None:
            return None
        blocked = torch.ones(query, keys, dtype=torch.bool, device=like.device)
        blocked = blocked.triu(keys - query + 1) if causal and query > 1 else ~blocked
        mask = torch.zeros(query, keys, dtype=like.dtype, device=like.device).masked_fill(
            blocked, torch.finfo(like.dtype).min
        )[None, None]
    if valid is None:
        pad = torch.ones if mask.dtype == torch.bool else torch.zeros
        return torch.cat([pad(*mask.shape[:-1], length, dtype=mask.dtype, device=mask.device), mask], dim=-1)
    rows, heads = valid.shape[0], mask.shape[1]
    allowed = valid[:, None, None, :].expand(rows, heads, mask.shape[2], length)
    prefix = (
        allowed
        if mask.dtype == torch.bool
        else torch.zeros(allowed.shape, dtype=mask.dtype, device=mask.device).masked_fill(
            ~allowed, torch.finfo(mask.dtype).min
        )
    )
    return torch.cat([prefix, mask.expand(rows, heads, *mask.shape[2:])], dim=-1)


def prefixed_attention(module, query, key, value, attention_mask, **kwargs):
    """`AttentionInterface` function: SDPA over the module's prefix followed by its (cached) keys."""
    prefix = _prefix_of(module, query.shape[0], key.dtype)
    if prefix is not None:
        heads, head_dim = key.shape[1], key.shape[3]
        keys, values = (p.reshape(p.shape[0], -1, heads, head_dim).transpose(1, 2) for p in prefix[:2])
        length = keys.shape[2]
        attention_mask = _widen_mask(
            attention_mask,
            length,
            query.shape[2],
            key.shape[2],
            getattr(module, "is_causal", False),
            query,
            prefix[2],
        )
        key, value = torch.cat([keys, key], dim=2), torch.cat([values, value], dim=2)
        kwargs["is_causal"] = False
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(INTERFACE_NAME, prefixed_attention)


def _route_interface(module: torch.nn.Module) -> None:
    """Point this module (only) at `prefixed_attention`; the model's own config and masks are untouched."""
    config = copy.copy(module.config)
    config._attn_implementation_internal = INTERFACE_NAME
    module.config = config


def _cache_is_empty(module: torch.nn.Module, cache) -> bool:
    if cache is None:
        return True
    cache = getattr(cache, "self_attention_cache", cache)
    return cache.get_seq_length(module.layer_idx) == 0


def _widen_inputs(module, args, kwargs):
    """Pre-hook (hooks route): decide whether this call prepends, and widen mask and position bias if so."""
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    prefix = _prefix_of(module, hidden.shape[0], hidden.dtype)
    module.speechpeft_prepend = prefix is not None and _cache_is_empty(
        module, kwargs.get("cache", kwargs.get("past_key_values"))
    )
    if module.speechpeft_prepend:
        if prefix[2] is not None:
            raise routing.RoutingError("prefixes of several lengths in one batch need the attention interface; "
                                       "this family's hooks take one prefix per batch")  # fmt: skip
        length = prefix[0].shape[1]
        mask = kwargs.get("attention_mask")
        if mask is not None:
            kwargs["attention_mask"] = _widen_mask(mask, length, hidden.shape[1], mask.shape[-1], False, hidden)
        bias = kwargs.get("position_bias")
        if bias is not None:  # [query, key, head_dim]: no relative position between a query and the prefix
            kwargs["position_bias"] = torch.cat([bias.new_zeros(bias.shape[0], length, bias.shape[2]), bias], 1)
    return args, kwargs


def _prepend(attention: torch.nn.Module, which: int, projection, inputs, output: torch.Tensor):
    """Forward hook on k_proj (which=0) / v_proj (which=1): put the prefix before the projected sequence."""
    if not getattr(attention, "speechpeft_prepend", False):
        return output
    prefix = _prefix_of(attention, output.shape[0], output.dtype)
    return torch.cat([prefix[which], output], dim=1)


def _route_hooks(module: torch.nn.Module) -> None:
    module.register_forward_pre_hook(_widen_inputs, with_kwargs=True)
    module.k_proj.register_forward_hook(partial(_prepend, module, 0))
    module.v_proj.register_forward_hook(partial(_prepend, module, 1))


def relative_prefixed_attention(
    module: torch.nn.Module,
    forward: Callable,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pos_emb: torch.Tensor | None = None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`FastSpeech2ConformerAttention.forward` with P prefix keys and values before the T real ones.

    Scores as in Transformer-XL (Dai et al. 2019, https://arxiv.org/abs/1901.02860, section 3.3) and the module's
    own forward, `((q + u) k^T + shift((q + v) p^T)) / sqrt(d)` with learned biases u, v and relative position
    embeddings p (from `pos_emb`, [1, 2T - 1, d_model]), over [prefix; sequence]. A prefix vector has no position:
    its scores are the content terms alone, `(q + u) k_prefix^T`, and its positional terms are zero, as the hooks
    route left-pads SpeechT5's position bias with zeros and as PEFT's prefix tuning leaves past keys unpositioned.
    Every query attends every prefix position (or those its row's adapter has: the bank's mixed prefixes), and
    the sequence keys `attention_mask` ([batch, 1, T], 1 = real) allows. Without a prefix (adapter disabled, a
    bank route without one) it is the module's own `forward`. Returns (output [batch, T, d_model], the attention
    weights [batch, heads, T, P + T] if `output_attentions`); ValueError for a mask of another shape, as upstream.
    """
    prefix = _prefix_of(module, hidden_states.shape[0], hidden_states.dtype)
    if prefix is None:
        return forward(hidden_states, attention_mask=attention_mask, pos_emb=pos_emb,
                       output_attentions=output_attentions)  # fmt: skip
    batch, time = hidden_states.shape[:2]
    if attention_mask is not None and attention_mask.shape != (batch, 1, time):
        raise ValueError(f"Attention mask should be of size {(batch, 1, time)}, but is {attention_mask.size()}")
    query, keys, values, length = _relative_projections(module, hidden_states, prefix)
    positions = _heads(module, module.linear_pos(pos_emb))  # [1, 2T - 1, heads, head_dim]
    content = (query + module.pos_bias_u).transpose(1, 2) @ keys.permute(0, 2, 3, 1)  # [batch, heads, T, P + T]
    relative = (query + module.pos_bias_v).transpose(1, 2) @ positions.permute(0, 2, 3, 1)  # [.., T, 2T - 1]
    relative = F.pad(module.shift_relative_position_tensor(relative), (length, 0))  # [.., T, P + T]
    scores = (content + relative) / math.sqrt(module.dim_key)
    blocked = _blocked_keys(attention_mask, prefix[2], length, scores)
    if blocked is None:
        weights = scores.softmax(-1)
    else:
        weights = scores.masked_fill(blocked, torch.finfo(scores.dtype).min).softmax(-1).masked_fill(blocked, 0.0)
    output = (module.dropout(weights) @ values.transpose(1, 2)).transpose(1, 2).reshape(batch, time, -1)
    return module.linear_out(output), weights if output_attentions else None


def _heads(module: torch.nn.Module, states: torch.Tensor) -> torch.Tensor:
    """[batch, length, d_model] -> [batch, length, heads, head_dim]."""
    return states.reshape(states.shape[0], -1, module.num_heads, module.head_dim)


def _relative_projections(
    module: torch.nn.Module, hidden_states: torch.Tensor, prefix: Prefix
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Queries [batch, T, heads, head_dim], keys and values [batch, P + T, heads, head_dim] (the prefix first), P."""
    query = _heads(module, module.linear_q(hidden_states))
    keys, values = module.linear_k(hidden_states), module.linear_v(hidden_states)
    keys = torch.cat([prefix[0].to(keys.dtype), keys], dim=1)
    values = torch.cat([prefix[1].to(values.dtype), values], dim=1)
    return query, _heads(module, keys), _heads(module, values), prefix[0].shape[1]


def _blocked_keys(
    mask: torch.Tensor | None, valid: torch.Tensor | None, length: int, scores: torch.Tensor
) -> torch.Tensor | None:
    """Which of the P + T keys each row may not attend, [batch, 1, 1, P + T] bool (True: blocked), from the key
    padding `mask` [batch, 1, T] and the prefix positions `valid` [batch, P] to the row; None when all are open."""
    if mask is None and valid is None:
        return None
    batch, time = scores.shape[0], scores.shape[-1] - length
    sequence = scores.new_zeros(batch, 1, 1, time, dtype=torch.bool) if mask is None else mask.unsqueeze(1).eq(0)
    prefix = scores.new_zeros(batch, 1, 1, length, dtype=torch.bool) if valid is None else ~valid[:, None, None]
    return torch.cat([prefix, sequence.expand(batch, 1, 1, time)], dim=-1)


def _route_relative(module: torch.nn.Module) -> None:
    """Compute this module's attention (only) with `relative_prefixed_attention`, which falls back on the forward
    it had (an accelerate hook's, if any) whenever there is no prefix."""
    module.forward = partial(relative_prefixed_attention, module, module.forward)


ROUTERS: dict[str, Callable[[torch.nn.Module], None]] = {
    "interface": _route_interface, "hooks": _route_hooks, "relative": _route_relative,
}  # fmt: skip


def route(module: torch.nn.Module) -> None:
    """Let prefixes into this attention module, by the route its kind takes (`route_of`)."""
    ROUTERS[route_of(module)](module)


class _CacheWithoutPrefix:
    """A cache as a position embedding should see it: without the prefix its first entries hold."""

    def __init__(self, cache, length: int) -> None:
        self.cache, self.length = cache, length

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(0, self.cache.get_seq_length(layer_idx) - self.length)


def _positions_skip_prefix(attention: torch.nn.Module, prenet, args, kwargs):
    """Pre-hook on a prenet that numbers positions from the cache length (args: inputs, mask, cache)."""
    cache = kwargs.get("cache", args[2] if len(args) > 2 else None)
    inputs = kwargs.get("input_ids", args[0] if args else None)
    prefix = None if cache is None else _prefix_of(attention, inputs.shape[0], torch.float32)
    if prefix is None:
        return args, kwargs
    shown = _CacheWithoutPrefix(cache, prefix[0].shape[1])
    if "cache" in kwargs:
        return args, kwargs | {"cache": shown}
    return (*args[:2], shown, *args[3:]), kwargs


def _route_prenet_positions(model: torch.nn.Module, first_decoder_attention: torch.nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "embed_positions") and "cache" in inspect.signature(module.forward).parameters:
            hook = partial(_positions_skip_prefix, first_decoder_attention)
            module.register_forward_pre_hook(hook, with_kwargs=True)


def add_prefixes(backbone: FrozenBackbone, plan: PrefixPlan, length: int, name: str = ADAPTER) -> None:
    """Give each planned module a trainable [2, length, d_model] prefix under adapter `name`, and route it."""
    generator = torch.Generator().manual_seed(0)
    for module_name in plan.modules:
        module = backbone.model.get_submodule(module_name)
        if not hasattr(module, SLOT):
            module.register_module(SLOT, torch.nn.ParameterDict())
            route(module)
        keys = key_projection(module)
        init = torch.randn(2, length, keys.out_features, generator=generator) * keys.out_features**-0.5
        getattr(module, SLOT)[name] = torch.nn.Parameter(init.to(keys.weight.device))
        module.speechpeft_active = name
    decoder = [m for n in plan.modules if getattr(m := backbone.model.get_submodule(n), "is_decoder", False)]
    if plan.route == "hooks" and decoder and not hasattr(backbone.model, "speechpeft_positions_hooked"):
        _route_prenet_positions(backbone.model, decoder[0])
        backbone.model.speechpeft_positions_hooked = True


def attach_prefix(backbone: FrozenBackbone, options: AdapterOptions) -> torch.nn.Module:
    """Freeze everything but the prefixes and the task head."""
    layout = plan(backbone, options.prefix_encoder)
    heads = backbone.spec.task(backbone.task).head_modules
    for param_name, param in backbone.model.named_parameters():
        param.requires_grad_(param_name.split(".")[0] in heads)
    add_prefixes(backbone, layout, options.prefix_length)
    backbone.model.speechpeft_options = {"prefix_length": options.prefix_length,
                                         "prefix_encoder": options.prefix_encoder}  # fmt: skip
    return backbone.model


register_method(own_files_method("prefix", "learned key/value prefixes in self-attention (decoder; encoder "
                                 "optional)", attach_prefix,
                                 frozenset({"prefix_length", "prefix_encoder"})))  # fmt: skip
