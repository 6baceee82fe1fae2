"""The slimmable model type (docs/slimmable.md): a multitask model run at a selectable `WidthConfig`
through prefix channel masks. It sits below the slimming mechanisms so that checkpoints rebuild one
without them; conversion and `materialize` are toolchain.slim.convert."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from toolchain.errors import SpecError

ENCODER = "encoder"
DEFAULT_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35)


@dataclass(frozen=True)
class WidthConfig:
    """One width configuration: the encoder's multiplier(s) and one multiplier per task decoder.

    ``encoder`` holds one width per encoder stage (``convert(..., encoder_stages=True)``), or a
    single width every stage shares; equal stage widths collapse to one, so ``(0.5, 0.5, 0.5)``
    and ``(0.5,)`` are the same configuration."""

    encoder: tuple[float, ...]
    decoders: tuple[tuple[str, float], ...]  # sorted (task, width) pairs: hashable

    @classmethod
    def make(cls, encoder: float | Sequence[float], decoders: Mapping[str, float]) -> "WidthConfig":
        enc = tuple(float(w) for w in encoder) if isinstance(encoder, (list, tuple)) else (float(encoder),)
        if not enc:
            raise SpecError("a width configuration needs at least one encoder width")
        if len(set(enc)) == 1:
            enc = enc[:1]
        return cls(enc, tuple(sorted((t, float(w)) for t, w in decoders.items())))

    @classmethod
    def uniform(cls, width: float, tasks: Iterable[str]) -> "WidthConfig":
        return cls.make(width, {t: width for t in tasks})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WidthConfig":
        """From the manifest form ``{"encoder": w or [w per stage], "decoders": {task: w}}``."""
        try:
            return cls.make(d["encoder"], {str(t): float(w) for t, w in d["decoders"].items()})
        except (KeyError, TypeError, ValueError, AttributeError, SpecError):
            raise SpecError(f"width config {d!r} must look like {{'encoder': 0.5, 'decoders': {{'task': 0.75}}}} "
                            "(or 'encoder': [1.0, 0.75, 0.5], one width per encoder stage)") from None

    @property
    def per_stage(self) -> bool:
        return len(self.encoder) > 1

    def encoder_width(self, stage: int) -> float:
        return self.encoder[stage] if self.per_stage else self.encoder[0]

    @property
    def encoder_key(self) -> str:
        """``75``, or ``100-75-50`` per stage: how tables and statistics name the encoder's widths."""
        return "-".join(str(_pct(w)) for w in self.encoder)

    def decoder(self, task: str) -> float:
        return dict(self.decoders)[task]

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": list(self.encoder) if self.per_stage else self.encoder[0], "decoders": dict(self.decoders)}

    @property
    def name(self) -> str:
        """``c50`` when every width is 0.5, else ``e50_garment100_group35...`` (``e100-75-50_...``
        with a width per encoder stage)."""
        widths = {*self.encoder, *dict(self.decoders).values()}
        if len(widths) == 1:
            return f"c{_pct(self.encoder[0])}"
        return f"e{self.encoder_key}_" + "_".join(f"{t}{_pct(w)}" for t, w in self.decoders)


def encoder_assignments(widths: Iterable[float], stages: int) -> list[tuple[float, ...]]:
    """Every encoder width assignment, widest first: one width per stage (|widths|^stages)."""
    return list(itertools.product(sorted(widths, reverse=True), repeat=stages))


def _pct(w: float) -> int:
    return int(round(100 * w))


def parse_config_name(name: str, tasks: Sequence[str]) -> WidthConfig:
    """``c75`` -> every width 0.75; ``e50_garment100_group35_...`` -> explicit widths (missing
    decoders take the encoder's width); ``e100-75-50_...`` gives one width per encoder stage."""
    bad = SpecError(f"config name {name!r} is not cNN (e.g. c50) or eNN_taskNN_... (e.g. e50_{tasks[0]}100, "
                    f"e100-75-50_{tasks[0]}100)")
    if name.startswith("c") and name[1:].isdigit():
        return WidthConfig.uniform(int(name[1:]) / 100, tasks)
    if not name.startswith("e"):
        raise bad
    parts = name.split("_")
    stages = parts[0][1:].split("-")
    if not all(p.isdigit() for p in stages):
        raise bad
    enc = [int(p) / 100 for p in stages]
    dec = {t: enc[-1] for t in tasks}
    for p in parts[1:]:
        task = next((t for t in sorted(tasks, key=len, reverse=True) if p.startswith(t) and p[len(t):].isdigit()), None)
        if task is None:
            raise SpecError(f"config name {name!r}: {p!r} is not TASKNN with a task of {', '.join(tasks)}")
        dec[task] = int(p[len(task):]) / 100
    return WidthConfig.make(enc, dec)


def keep_channels(channels: int, width: float, round_to: int) -> int:
    """Channels a group of `channels` keeps at `width`: ceil(width * C) rounded up to a multiple
    of `round_to`, at least `round_to`, at most `channels`."""
    if not 0 < width <= 1:
        raise SpecError(f"width {width} must be in (0, 1]")
    k = math.ceil(width * channels - 1e-9)
    k = round_to * math.ceil(k / round_to)
    return int(min(channels, max(round_to, k)))


@dataclass
class GroupInfo:
    name: str  # root layer
    unit: str  # "encoder" or a task name
    channels: int
    out_layers: list[str]
    in_layers: list[str]
    stage: int = 0  # encoder stage (by output resolution) when the spec has several


@dataclass
class SlimSpec:
    """What the slimmable model knows about itself (pickled with it)."""

    tasks: list[str]
    widths: tuple[float, ...]
    round_to: int
    groups: list[GroupInfo]
    units: list[str]  # "encoder" then the tasks that have a decoder group
    unit_layers: dict[str, list[str]] = field(default_factory=dict)  # every Conv/Linear/BN per unit
    feature_points: dict[str, str] = field(default_factory=dict)  # encoder module read by decoders -> its group
    stages: int = 1  # encoder stages with a width each (1: one width for the whole encoder)

    def keep(self, group: GroupInfo, config: WidthConfig) -> int:
        w = config.encoder_width(group.stage) if group.unit == ENCODER else config.decoder(group.unit)
        return keep_channels(group.channels, w, self.round_to)

    def encoder_configs(self, widths: Sequence[float] | None = None) -> list[tuple[float, ...]]:
        return encoder_assignments(widths or self.widths, self.stages)


class _PrefixMask:
    """Forward hook: output * mask of the owner's current configuration (picklable)."""

    def __init__(self, owner: "SlimmableModel", group: str) -> None:
        self.owner, self.group = owner, group

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        mask = self.owner._masks.get(self.group)
        if mask is None:
            return None
        return output * mask.view(1, -1, *([1] * (output.dim() - 2))).to(output.dtype)


class SlimmableModel(nn.Module):
    """A multitask model whose encoder and decoders run at selectable widths.

    forward(x) -> {task: tensor} at the current configuration (``set_config``; full width after
    conversion). Contract: for every configuration ``c``, ``set_config(c); self(x)`` equals
    ``slim.convert.materialize(self, c, x)(x)`` in eval mode (up to float rounding)."""

    def __init__(self, model: nn.Module, spec: SlimSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        self._masks: dict[str, torch.Tensor | None] = {}
        self.bn_stats: dict[str, dict[str, dict[str, torch.Tensor]]] = {}  # stats key -> layer -> buffers
        self.config = WidthConfig.uniform(1.0, spec.tasks)
        modules = dict(model.named_modules())
        for g in spec.groups:
            for name in g.out_layers:
                modules[name].register_forward_hook(_PrefixMask(self, g.name))

    @property
    def tasks(self) -> list[str]:
        return list(self.spec.tasks)

    def configs(self, widths: Sequence[float] | None = None) -> list[WidthConfig]:
        """The uniform configurations (every width equal), widest first."""
        return [WidthConfig.uniform(w, self.spec.tasks) for w in sorted(widths or self.spec.widths, reverse=True)]

    def check_config(self, config: WidthConfig) -> WidthConfig:
        missing = [t for t in self.spec.tasks if t not in dict(config.decoders)]
        if missing:
            raise SpecError(f"width config {config.to_dict()} has no width for decoder(s) {', '.join(missing)}; "
                            f"give every task of {', '.join(self.spec.tasks)} a width")
        if config.per_stage and len(config.encoder) != self.spec.stages:
            raise SpecError(f"width config {config.to_dict()} has {len(config.encoder)} encoder widths; this model has "
                            f"{self.spec.stages} encoder stage(s): give one width, or one per stage")
        for w in (*config.encoder, *dict(config.decoders).values()):
            if not 0 < w <= 1:
                raise SpecError(f"width {w} in {config.to_dict()} must be in (0, 1]")
        return config

    def set_config(self, config: WidthConfig, load_stats: bool = True) -> None:
        """Select `config`: channel masks, and (eval) its recalibrated batch-norm statistics."""
        self.check_config(config)
        self.config = config
        for g in self.spec.groups:  # a prefix mask: the first `keep` channels 1, the rest 0 (None: all kept)
            k = self.spec.keep(g, config)
            self._masks[g.name] = None if k >= g.channels else (torch.arange(g.channels) < k).float()
        if load_stats and self.bn_stats:
            self._load_stats(config)

    def stats_keys(self, config: WidthConfig) -> dict[str, str]:
        """unit -> key of the recalibrated statistics it uses under `config`: the encoder's depend on
        the encoder width only, a decoder's on (encoder width, its own width)."""
        return {ENCODER: f"encoder@{config.encoder_key}",
                **{t: f"{t}@{config.encoder_key}/{_pct(config.decoder(t))}" for t in self.spec.tasks}}

    def _load_stats(self, config: WidthConfig) -> None:
        modules = dict(self.model.named_modules())
        for unit, key in self.stats_keys(config).items():
            if (stats := self.bn_stats.get(key)) is None:
                raise SpecError(f"no batch-norm statistics for {key} (width not in {self.spec.widths}); "
                                "recalibrate with toolchain.slim.train.recalibrate for this width")
            for name, bufs in stats.items():
                bn = modules[name]
                bn.running_mean.copy_(bufs["running_mean"])
                bn.running_var.copy_(bufs["running_var"])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(x)

    def checkpoint_plan(self) -> dict[str, Any]:
        """What a checkpoint stores besides the inner model's tensors: spec, configuration, statistics."""
        return {"spec": asdict(self.spec), "config": self.config.to_dict(),
                "bn_stats": {k: {n: dict(b) for n, b in v.items()} for k, v in self.bn_stats.items()}}

    @classmethod
    def from_checkpoint_plan(cls, inner: nn.Module, plan: Mapping[str, Any]) -> "SlimmableModel":
        """The model `checkpoint_plan` describes around `inner` (statistics set, configuration not yet)."""
        s = dict(plan["spec"])
        s["groups"] = [GroupInfo(**g) for g in s["groups"]]
        s["widths"] = tuple(s["widths"])
        model = cls(inner, SlimSpec(**s))
        model.bn_stats = {k: {n: dict(b) for n, b in v.items()} for k, v in plan["bn_stats"].items()}
        return model

    def sample(self, rng: random.Random) -> WidthConfig:
        """A random configuration: each unit's (each encoder stage's) width drawn from the spec's widths."""
        w = self.spec.widths
        return WidthConfig.make([rng.choice(w) for _ in range(self.spec.stages)], {t: rng.choice(w) for t in self.spec.tasks})
