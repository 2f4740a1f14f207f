"""The recipe: a model, its data, and a list of stages, each a registered
config (``kind``) plus that config's fields. Everything is validated before
anything runs; a wrong key, type or value names the stage (index and name) and
the field, and says what is allowed.

```yaml
model: lenet300                 # zoo name | {zoo, kwargs} | {artifact: PATH} | {import_path: "pkg.mod:factory", kwargs}
                                # | {hf: HF_MODEL_FOLDER, auto: AutoModelForSequenceClassification}
data: {dataset: mnist, holdout: 5000}   # or dataset: my.npz | {path: imgs/, size: 32x32, mode: L} (zoo.user_data)
baseline: dense                 # measure the baseline after this stage (default: the model as given)
teacher: baseline               # optional: "baseline" or a model spec, for recipe-level distillation;
                                # {zoo: lenet5, train: {epochs: 20, ...}} trains that teacher first (once, resumable)
distill: {temperature: 4.0}     # optional: fields of the "distill" config; fine-tunes after the baseline use it
measure: {latency_batch: 1, threads: 1, repeats: 50}
stages:
  - {name: dense, kind: train, epochs: 30, lr: 0.001}
  - {name: prune, kind: prune.unstructured, sparsity: 0.92}
```
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from ..core.config import Config, config_class, registered_configs
from ..core.errors import ConfigError
from ..train import TrainConfig

__all__ = ["Recipe", "Stage", "ModelSpec", "TeacherSpec", "DataSpec", "MeasureSpec", "load_recipe",
           "parse_model_spec"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TOP_KEYS = ("name", "model", "data", "baseline", "teacher", "distill", "measure", "seed", "stages")


@dataclasses.dataclass(frozen=True)
class ModelSpec(Config):
    """Exactly one of ``zoo`` (a zoo model name), ``artifact`` (a saved
    artifact file), ``import_path`` ("package.module:factory", a class or a
    function returning an nn.Module, called with ``kwargs``) or ``hf`` (a
    Hugging Face model folder, loaded offline with the Auto class ``auto``,
    default AutoModel). Built by ``zoo.sources.load_model``."""

    zoo: str | None = None
    artifact: str | None = None
    import_path: str | None = None
    hf: str | None = None
    auto: str | None = None
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        given = [k for k in ("zoo", "artifact", "import_path", "hf") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"model: give exactly one of zoo, artifact, import_path, hf (got {given or 'none'})")
        if self.zoo is not None:
            from ..zoo.models import model_names

            if self.zoo not in model_names():
                raise ConfigError(f"model.zoo: unknown zoo model {self.zoo!r}; known: {model_names()}")
        if self.artifact is not None:
            object.__setattr__(self, "artifact", os.path.expanduser(self.artifact))
            if self.kwargs:
                raise ConfigError("model.kwargs: an artifact rebuilds itself; remove kwargs")
            if not Path(self.artifact).is_file():
                raise ConfigError(f"model.artifact: no such file {self.artifact!r}; give the path of a saved artifact")
        if self.import_path is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", self.import_path):
            raise ConfigError(f"model.import_path: {self.import_path!r} must look like 'package.module:factory' "
                              "(a class or a function returning an nn.Module)")
        if self.auto is not None and self.hf is None:
            raise ConfigError("model.auto: only used with model.hf (a Hugging Face model folder); remove it")
        if self.hf is not None:
            from ..core.errors import ModelError
            from ..zoo.sources import check_auto, check_hf_dir

            object.__setattr__(self, "hf", os.path.expanduser(self.hf))
            try:
                check_hf_dir(self.hf, where="model.hf")
                check_auto(self.auto, where="model.auto")
            except ModelError as e:
                raise ConfigError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class TeacherSpec(ModelSpec):
    """A teacher model spec; with ``train`` (the fields of a ``train`` stage)
    the recipe trains it on the recipe's training split before the first
    stage that distils, once: ``teacher/model.safetensors`` in the output
    folder, reused while the teacher spec, data and seed are unchanged, and
    resumed from its last epoch after a kill."""

    train: TrainConfig | None = None


@dataclasses.dataclass(frozen=True)
class DataSpec(Config):
    """The data set and the calibration/selection holdout split off its
    training split (never the test split). ``dataset`` is a built-in name or
    your own data: a path or spec string (``data.npz``, ``imgs/?size=32x32``,
    ``pkg.mod:fn``, ...) or a mapping ``{path: ..., <options>}`` (see
    ``zoo.user_data``), kept as its canonical string."""

    dataset: str | dict[str, Any] = "mnist"
    holdout: int = 5000
    seed: int = 0
    train_limit: int | None = None  # use only the first N training examples (quick runs)
    test_limit: int | None = None  # measure on the first N test examples (quick runs; the report says so)

    def validate(self) -> None:
        from ..zoo.data import dataset_names
        from ..zoo.user_data import is_user_data, spec_string

        if isinstance(self.dataset, dict) or (self.dataset not in dataset_names() and is_user_data(self.dataset)):
            from ..core.errors import DataError

            try:
                object.__setattr__(self, "dataset", spec_string(self.dataset))
            except DataError as e:
                raise ConfigError(f"data.dataset: {e}") from None
        elif self.dataset not in dataset_names():
            raise ConfigError(f"data.dataset: unknown data set {self.dataset!r}; known: {dataset_names()}, or a path "
                              "to your own data (.npz, x.npy:y.npy, image folder, .csv, saved Hugging Face dataset)")
        if self.holdout < 0:
            raise ConfigError(f"data.holdout must be >= 0, got {self.holdout}")
        for f in ("train_limit", "test_limit"):
            v = getattr(self, f)
            if v is not None and v <= 0:
                raise ConfigError(f"data.{f} must be positive or null, got {v}")
        if self.train_limit is not None and self.holdout >= self.train_limit:
            raise ConfigError(f"data.holdout ({self.holdout}) must be smaller than data.train_limit ({self.train_limit})")


@dataclasses.dataclass(frozen=True)
class MeasureSpec(Config):
    """How every model (baseline and after each stage) is measured."""

    latency: bool = True
    latency_batch: int = 1
    threads: int = 1
    repeats: int = 50
    warmup: int = 10
    eval_batch_size: int = 1000
    robustness: bool = False  # compare final with baseline under corruptions (report["robustness"], report.html)
    robustness_severities: tuple[float, ...] = (1, 2, 3, 4, 5)
    robustness_limit: int | None = None  # first N test examples only (None: all)

    def validate(self) -> None:
        for f in ("latency_batch", "threads", "repeats", "eval_batch_size"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"measure.{f} must be positive, got {getattr(self, f)}")
        if self.robustness_limit is not None and self.robustness_limit <= 0:
            raise ConfigError(f"measure.robustness_limit must be positive or null, got {self.robustness_limit}")
        if not self.robustness_severities or any(s < 0 for s in self.robustness_severities):
            raise ConfigError(f"measure.robustness_severities must be numbers >= 0, e.g. [1, 2, 3, 4, 5], got "
                              f"{list(self.robustness_severities)}")
        if self.warmup < 0:
            raise ConfigError(f"measure.warmup must be >= 0, got {self.warmup}")


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int
    name: str
    kind: str
    config: Config

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, **self.config.to_dict()}

    @property
    def folder(self) -> str:
        return f"{self.index}-{self.name}"


@dataclasses.dataclass(frozen=True)
class Recipe:
    model: ModelSpec
    data: DataSpec
    stages: tuple[Stage, ...]
    measure: MeasureSpec = MeasureSpec()
    baseline: int = -1  # index of the stage after which the baseline is measured; -1: the model as given
    teacher: ModelSpec | str | None = None  # "baseline" or a TeacherSpec
    distill: Config | None = None
    seed: int = 0
    name: str = "recipe"

    def to_dict(self) -> dict:
        """The resolved recipe (every default filled in); ``from_dict`` of it
        gives back an equal recipe."""
        out: dict[str, Any] = {"name": self.name, "model": self.model.to_dict(), "data": self.data.to_dict()}
        if self.baseline >= 0:
            out["baseline"] = self.stages[self.baseline].name
        if self.teacher is not None:
            out["teacher"] = self.teacher if isinstance(self.teacher, str) else self.teacher.to_dict()
        if self.distill is not None:
            out["distill"] = self.distill.to_dict()
        out["measure"] = self.measure.to_dict()
        out["seed"] = self.seed
        out["stages"] = [s.to_dict() for s in self.stages]
        return out

    def stage(self, key: int | str) -> Stage:
        return self.stages[_stage_index(self.stages, key, "stage")]

    @classmethod
    def from_dict(cls, raw: Any) -> "Recipe":
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe: expected a mapping with keys {list(_TOP_KEYS)}, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(_TOP_KEYS))
        if unknown:
            raise ConfigError(f"recipe: unknown key(s) {unknown}; allowed keys are {sorted(_TOP_KEYS)}")
        if "model" not in raw:
            raise ConfigError("recipe: 'model' is missing; give a zoo name, {artifact: PATH}, {import_path: ...} "
                              "or {hf: FOLDER}")
        if not raw.get("stages"):
            raise ConfigError("recipe: 'stages' is missing or empty; list at least one stage, e.g. {kind: train, epochs: 1}")
        model = parse_model_spec(raw["model"], "model")
        data = _section(DataSpec, raw.get("data") or {}, "data")
        measure = _section(MeasureSpec, raw.get("measure") or {}, "measure")
        stages = _parse_stages(raw["stages"])
        baseline = -1
        if raw.get("baseline") is not None:
            baseline = _stage_index(stages, raw["baseline"], "baseline")
        teacher = raw.get("teacher")
        if teacher is not None:
            if teacher == "baseline":
                if baseline < 0 and model.artifact is None:
                    raise ConfigError("teacher: 'baseline' needs a trained baseline: set baseline: <stage> or load "
                                      "model: {artifact: ...}")
            else:
                teacher = parse_model_spec(teacher, "teacher", cls=TeacherSpec)
        distill = None
        if raw.get("distill") is not None:
            if teacher is None:
                raise ConfigError("distill: recipe-level distillation needs a teacher; add teacher: baseline "
                                  "(or a model spec)")
            if "distill" not in registered_configs():
                raise ConfigError("distill: the 'distill' config is not available (torchslim.distill is missing)")
            distill = _section(config_class("distill"), raw["distill"], "distill")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed: expected an integer, got {seed!r}")
        name = raw.get("name", "recipe")
        if not isinstance(name, str):
            raise ConfigError(f"name: expected a string, got {name!r}")
        return cls(model=model, data=data, stages=stages, measure=measure, baseline=baseline, teacher=teacher,
                   distill=distill, seed=seed, name=name)


def _section(cls: type[Config], value: Any, where: str) -> Config:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with fields {[f.name for f in dataclasses.fields(cls)]}, "
                          f"got {value!r}")
    try:
        return cls.from_dict(value, where=where)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def parse_model_spec(value: Any, where: str = "model", cls: type[ModelSpec] = ModelSpec) -> ModelSpec:
    """A model spec from its shorthand (a string) or its mapping."""
    if isinstance(value, str):
        from ..zoo.models import model_names

        p = Path(value).expanduser()
        if value in model_names():
            value = {"zoo": value}
        elif ":" in value and not p.exists():
            value = {"import_path": value}
        elif p.is_dir() and (p / "config.json").is_file():
            value = {"hf": value}
        elif not p.exists() and not p.suffix and "/" not in value and os.sep not in value:
            # a bare word is meant as a zoo name, not as a file that is missing
            raise ConfigError(f"{where}: unknown zoo model {value!r}; known: {model_names()}, or give an artifact "
                              "path, {import_path: 'pkg.module:factory'} or {hf: FOLDER}")
        else:
            value = {"artifact": value}
    return _section(cls, value, where)


def _parse_stages(items: Any) -> tuple[Stage, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"stages: expected a list of stages ({{kind: ..., <fields>}}), got {type(items).__name__}")
    known = registered_configs()
    stages: list[Stage] = []
    used: set[str] = set()
    for i, item in enumerate(items):
        label = f"stages[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{label}: expected a mapping {{kind: ..., <fields>}}, got {item!r}")
        item = dict(item)
        kind = item.pop("kind", None)
        name = item.pop("name", None)
        if name is not None:
            label = f"stages[{i}] ({name!r})"
        if kind is None:
            raise ConfigError(f"{label}: 'kind' is missing; use one of {sorted(known)}")
        if kind not in known:
            raise ConfigError(f"{label}: unknown kind {kind!r}; use one of {sorted(known)}")
        if name is None:
            name = kind
            k = 2
            while name in used:
                name, k = f"{kind}-{k}", k + 1
        elif not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{label}: name {name!r} must be letters, digits, '_', '.', '-'")
        elif name in used:
            raise ConfigError(f"{label}: the name {name!r} is used by an earlier stage; stage names must be unique")
        elif name.isdigit():
            raise ConfigError(f"{label}: a stage name cannot be a number (it would clash with indices)")
        used.add(name)
        label = f"stages[{i}] ({name!r}, kind {kind!r})"
        cls = known[kind]
        try:
            cfg = cls.from_dict(item, where=label)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(label) else f"{label}: {msg}") from None
        stages.append(Stage(index=i, name=name, kind=kind, config=cfg))
    return tuple(stages)


def _stage_index(stages, key: Any, where: str) -> int:
    names = [s.name for s in stages]
    if isinstance(key, bool):
        raise ConfigError(f"{where}: {key!r} is not a stage; use a stage name {names} or index 0..{len(stages) - 1}")
    if isinstance(key, int) or (isinstance(key, str) and key.lstrip("-").isdigit()):
        i = int(key)
        if not -len(stages) <= i < len(stages):
            raise ConfigError(f"{where}: stage index {i} is out of range; the recipe has {len(stages)} stages {names}")
        return i % len(stages)
    if key in names:
        return names.index(key)
    raise ConfigError(f"{where}: no stage named {key!r}; stages are {names}")


def yaml_load(text: str):
    """YAML with 1e-3 read as a number (plain YAML 1.1 reads it as a string)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
        list("-+0123456789."))
    return yaml.load(text, Loader=_Loader)


def load_recipe(source: "str | Path | dict | Recipe", overrides: Any = None) -> Recipe:
    """Read (a YAML path, a YAML string, a dict or a Recipe), apply dotted
    ``key=value`` overrides, and validate everything."""
    from .overrides import apply_overrides

    if isinstance(source, Recipe):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        import yaml

        text = str(source)
        p = Path(text)
        if "\n" not in text and (p.suffix in (".yaml", ".yml", ".json") or p.exists()):
            if not p.is_file():
                raise ConfigError(f"{p}: no such recipe file")
            text = p.read_text()
            where = str(p)
        else:
            where = "recipe"
        try:
            raw = yaml_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: a recipe is a mapping with keys {list(_TOP_KEYS)}")
        raw.setdefault("name", Path(where).stem if where != "recipe" else "recipe")
    if overrides:
        raw = apply_overrides(raw, overrides)
    return Recipe.from_dict(raw)
