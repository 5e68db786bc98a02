"""The bank's layers: one wrapper per adapted module of the frozen backbone, routing each sample of a batch
through its own adapter.

A `BankLayer` holds no adapter: the adapters of the active route (`adapters.routing`) carry their tensors,
keyed by the module's path, so loading, unloading or evicting an adapter never touches a layer, and a call
in flight keeps the adapters it started with. Per call and layer, the route's tensors are gathered once:

- LoRA (AdaLoRA folded in: `bank_weights`): `y = base(x) + s_i * B_i A_i x` for the rows of sample `i`. A
  uniform route runs PEFT's own two `F.linear`s; a mixed one pads every A/B to the route's largest rank with
  zeros and runs two batched matmuls over `[samples, rows per sample, features]` (Punica/S-LoRA's gathered
  batched LoRA, Chen et al. 2023, https://arxiv.org/abs/2310.18547).
- bottleneck (Houlsby / Pfeiffer): `h + up_i(relu(down_i(h)))` on the sub-block's output, padded and batched
  the same way; a sample without one gets exact zeros.
- task heads (a classifier, a CTC head): each sample's head weights through the base module with
  `torch.func.functional_call`; wider heads pad narrower ones' outputs with the dtype's minimum, so an
  argmax or softmax over a row's own labels is unchanged.

Prefixes route inside the attention (`adapters.prefix`), which reads the same route.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from speechpeft.adapters import routing


@dataclass(frozen=True)
class LoraDelta:
    """One adapter's low-rank update of one linear layer: `scaling / divisor * B @ A`."""

    A: torch.Tensor  # (rank, in_features)
    B: torch.Tensor  # (out_features, rank)
    scaling: float
    divisor: float = 1.0  # AdaLoRA divides by its rank count after scaling; kept apart for PEFT's rounding


@dataclass(frozen=True)
class Bottleneck:
    """One adapter's residual bottleneck on one sub-block's output (width d, bottleneck k)."""

    down: torch.Tensor  # (k, d)
    down_bias: torch.Tensor  # (k,)
    up: torch.Tensor  # (d, k)
    up_bias: torch.Tensor  # (d,)


class BankLayer(torch.nn.Module):
    """`base_layer` followed by each sample's adapter (see the module docstring); the base alone off-route."""

    def __init__(self, base_layer: torch.nn.Module, path: str) -> None:
        super().__init__()
        self.base_layer, self.path = base_layer, path

    def forward(self, *args, **kwargs):
        route = routing.active()
        if route is None:
            return self.base_layer(*args, **kwargs)
        output = self._head(route, args, kwargs)
        if args and isinstance(args[0], torch.Tensor):
            output = self._lora(route, args[0], output)
        return self._bottleneck(route, output)

    def _lora(self, route: routing.Route, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        plan = route.plan(self.path, "lora", x.shape[0], self._lora_plan)
        if plan is None:
            return output
        if isinstance(plan, LoraDelta):  # as PEFT's LoRA (and AdaLoRA) layers compute it
            delta = F.linear(F.linear(x.to(plan.A.dtype), plan.A), plan.B) * plan.scaling / plan.divisor
            return output + delta.to(output.dtype)
        A, B, scaling, divisor = plan  # (samples, rank, in), (samples, out, rank): transposed as F.linear reads them
        rows = x.to(A.dtype).reshape(A.shape[0], -1, x.shape[-1])  # (samples, rows per sample x positions, in)
        delta = torch.bmm(torch.bmm(rows, A.transpose(1, 2)), B.transpose(1, 2)) * scaling / divisor
        return output + delta.reshape(output.shape).to(output.dtype)

    def _lora_plan(self, route: routing.Route, repeats: int):
        deltas = route.entries("lora", self.path)
        present = [d for d in deltas if d is not None]
        if not present:
            return None
        if route.uniform():
            return present[0]
        rank = max(d.A.shape[0] for d in present)
        out_features, in_features = present[0].B.shape[0], present[0].A.shape[1]
        A = present[0].A.new_zeros(len(deltas), rank, in_features)
        B = present[0].B.new_zeros(len(deltas), out_features, rank)
        scaling, divisor = present[0].A.new_zeros(len(deltas), 1, 1), present[0].A.new_ones(len(deltas), 1, 1)
        for i, d in enumerate(deltas):
            if d is not None:
                r = d.A.shape[0]
                A[i, :r], B[i, :, :r], scaling[i], divisor[i] = d.A, d.B, d.scaling, d.divisor
        return A, B, scaling, divisor

    def _bottleneck(self, route: routing.Route, output):
        hidden = output[0] if isinstance(output, tuple) else output
        plan = route.plan(self.path, "bottleneck", hidden.shape[0], self._bottleneck_plan)
        if plan is None:
            return output
        if isinstance(plan, Bottleneck):  # as `adapters.bottleneck.BottleneckLayer` computes it
            inner = F.relu(F.linear(hidden.to(plan.down.dtype), plan.down, plan.down_bias))
            hidden = hidden + F.linear(inner, plan.up, plan.up_bias).to(hidden.dtype)
        else:
            down, down_bias, up, up_bias = plan  # (samples, k, d), (samples, 1, k), (samples, d, k), (samples, 1, d)
            rows = hidden.to(down.dtype).reshape(down.shape[0], -1, hidden.shape[-1])
            inner = F.relu(torch.bmm(rows, down.transpose(1, 2)) + down_bias)
            delta = torch.bmm(inner, up.transpose(1, 2)) + up_bias
            hidden = hidden + delta.reshape(hidden.shape).to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    def _bottleneck_plan(self, route: routing.Route, repeats: int):
        adapters = route.entries("bottleneck", self.path)
        present = [b for b in adapters if b is not None]
        if not present:
            return None
        if route.uniform():
            return present[0]
        width, inner = present[0].up.shape[0], max(b.down.shape[0] for b in present)
        like, count = present[0].down, len(adapters)
        down, down_bias = like.new_zeros(count, inner, width), like.new_zeros(count, 1, inner)
        up, up_bias = like.new_zeros(count, width, inner), like.new_zeros(count, 1, width)
        for i, b in enumerate(adapters):
            if b is not None:
                k = b.down.shape[0]
                down[i, :k], down_bias[i, 0, :k] = b.down, b.down_bias
                up[i, :, :k], up_bias[i, 0] = b.up, b.up_bias
        return down, down_bias, up, up_bias

    def _head(self, route: routing.Route, args: tuple, kwargs: dict):
        rows = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else len(route)
        owners = route.plan(self.path, "head", rows, self._head_plan)
        if owners is None:
            return self.base_layer(*args, **kwargs)
        if len(owners) == 1:
            return functional_call(self.base_layer, owners[0][0], args, kwargs)
        outputs = [(index, functional_call(self.base_layer, params, (args[0][index],), kwargs))
                   for params, index in owners]  # fmt: skip
        width = max(out.shape[-1] for _, out in outputs)
        merged = outputs[0][1].new_full(
            (rows, *outputs[0][1].shape[1:-1], width), torch.finfo(outputs[0][1].dtype).min
        )
        for index, out in outputs:
            merged[index, ..., : out.shape[-1]] = out
        return merged

    def _head_plan(self, route: routing.Route, repeats: int) -> list[tuple[dict, torch.Tensor]] | None:
        """The distinct head weights among the route's samples, each with the batch rows it serves (a sample
        with no head of its own uses the backbone's); None when no sample brings one."""
        heads = route.entries("heads", self.path)
        if all(h is None for h in heads):
            return None
        base = dict(self.base_layer.named_parameters())
        groups: dict[int, tuple[dict, list[int]]] = {}
        for sample, head in enumerate(heads):
            params = base if head is None else head
            rows = range(sample * repeats, (sample + 1) * repeats)
            groups.setdefault(id(params), (params, []))[1].extend(rows)
        device = next(iter(base.values())).device
        return [(params, torch.tensor(rows, device=device)) for params, rows in groups.values()]
