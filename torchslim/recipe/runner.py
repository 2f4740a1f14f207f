"""Run a recipe: build the model, data and context, run every stage through
the config registry, measure the baseline and every stage with the same
code as ``profile``, save an artifact and a stage report after each stage,
and write report.json / report.html and the final artifact.

Resuming: rerunning into the same folder skips every stage whose saved report
matches the recipe so far (a fingerprint of the model, data, seed, teacher and
all stages up to it) and continues from the last finished stage's artifact;
a killed stage restarts from its last epoch through ``fit``'s checkpoints in
the stage folder. Changing a later stage (an override) reruns only from there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..core.config import apply_stage
from ..core.context import Context
from ..core.errors import ConfigError
from .schema import Recipe, load_recipe

__all__ = ["run_recipe"]

BASELINE_ARTIFACT = "baseline.safetensors"
STAGE_ARTIFACT = "model.safetensors"
TEACHER_DIR = "teacher"  # a teacher the recipe trains itself (teacher: {zoo: ..., train: {...}})


def _write_json(path: Path, obj: Any) -> None:
    from ..artifact import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _plain(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(type(o).__name__)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, or None when it cannot be (a model, a function)."""
    try:
        return json.loads(json.dumps(value, default=_plain))
    except (TypeError, ValueError):
        return None


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprints(recipe: Recipe) -> tuple[str, list[str]]:
    """(baseline fingerprint, per-stage fingerprints): each covers everything
    that can change the model up to that point."""
    d = recipe.to_dict()
    head = {"model": d["model"], "data": d["data"], "seed": d["seed"]}
    # configs enter by their non-default fields only, so a field added to a
    # config in a later version does not invalidate finished stages
    tail = {"teacher": d.get("teacher"), "distill": recipe.distill.changed() if recipe.distill is not None else None}
    d["stages"] = [{"name": s.name, "kind": s.kind, **s.config.changed()} for s in recipe.stages]

    fps = []
    for i in range(len(recipe.stages)):
        obj = {**head, "stages": d["stages"][: i + 1]}
        if i > recipe.baseline:
            obj.update(tail)
        fps.append(_hash(obj))
    base = fps[recipe.baseline] if recipe.baseline >= 0 else _hash(head)
    return base, fps


def _build_model(spec, dataset: str) -> torch.nn.Module:
    """The model of a ModelSpec (zoo, artifact, import path or Hugging Face
    folder), through the resolver the CLI and the Python API share."""
    from ..zoo.sources import load_model

    return load_model(spec, dataset=dataset)


def _data(recipe: Recipe):
    from ..zoo.data import load_dataset, split_train

    ds = recipe.data
    train = load_dataset(ds.dataset, "train")
    test = load_dataset(ds.dataset, "test")
    if ds.train_limit is not None:
        train = train.take(ds.train_limit)
    if ds.test_limit is not None:
        test = test.take(ds.test_limit)
    if ds.holdout >= len(train):
        raise ConfigError(f"data.holdout ({ds.holdout}) must be smaller than the training split ({len(train)})")
    calib = None
    if ds.holdout > 0:
        train, calib = split_train(train, ds.holdout, seed=ds.seed)
    return train, test, calib


def _clean_stale(stages_dir: Path, keep: set[str]) -> None:
    if not stages_dir.is_dir():
        return
    for p in stages_dir.iterdir():
        if p.is_dir() and p.name.split("-", 1)[0].isdigit() and p.name not in keep:
            shutil.rmtree(p)


def _say(msg: str, progress: bool) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)


def run_recipe(recipe_or_path, out_dir, *, overrides=None, resume: bool = True, progress: bool = True,
               html: bool = True) -> dict:
    """Run a recipe (a YAML path, a dict or a Recipe) into ``out_dir`` and
    return the report (also written as ``out_dir/report.json``).

    ``overrides``: dotted ``key=value`` strings (``["stages.1.sparsity=0.95"]``,
    a stage may be named instead of indexed) or a dict of them.
    ``resume=False`` starts over (the folder's previous stages are deleted).
    """
    from tqdm.auto import tqdm

    from ..artifact import load, save
    from ..artifact.format import atomic_write_bytes, remove_stale_temp_files
    from ..zoo import example_inputs
    from .measure import measure_model

    recipe = load_recipe(recipe_or_path, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages_dir = out / "stages"
    # what a run killed inside an atomic write left (the run folder itself may hold anything else: not recursive)
    remove_stale_temp_files(out, recursive=False)
    for sub in (stages_dir, out / TEACHER_DIR):
        remove_stale_temp_files(sub)
    if not resume:
        _clean_stale(stages_dir, set())
        for f in ("baseline.json", BASELINE_ARTIFACT):
            (out / f).unlink(missing_ok=True)
    import yaml

    atomic_write_bytes(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode())
    base_fp, fps = _fingerprints(recipe)
    ds_name = recipe.data.dataset

    torch.manual_seed(recipe.seed)
    train, test, calib = _data(recipe)
    model = _build_model(recipe.model, ds_name)
    from ..zoo.user_data import check_data_fits, is_user_data

    if is_user_data(ds_name):  # your own data: a wrong shape or label range fails now, not mid-stage
        check_data_fits(model, train, where=f"data.dataset {ds_name!r}")
    inputs = example_inputs(model, ds_name, batch=recipe.measure.latency_batch)
    # handlers get the training and selection splits only; the test split stays here, for measuring
    ctx = Context(train_data=train, calib_data=calib, example_inputs=inputs, dataset=ds_name,
                  out_dir=out, seed=recipe.seed, progress=progress)

    # ---- what is already done --------------------------------------------
    done = -1
    records: list[dict] = []
    for st in recipe.stages:
        rec = _read_json(stages_dir / st.folder / "stage.json")
        if rec is None or rec.get("fingerprint") != fps[st.index] or rec.get("status") != "done" \
                or not (stages_dir / st.folder / STAGE_ARTIFACT).is_file():
            break
        done = st.index
        records.append(rec)
    nxt = done + 1
    keep = {s.folder for s in recipe.stages[: nxt]}
    if nxt < len(recipe.stages):
        st = recipe.stages[nxt]
        fp_file = stages_dir / st.folder / "fingerprint.txt"
        if fp_file.is_file() and fp_file.read_text().strip() == fps[nxt]:
            keep.add(st.folder)  # a killed stage: keep its checkpoints
    _clean_stale(stages_dir, keep)
    baseline_rec = _read_json(out / "baseline.json")
    if baseline_rec is not None and (baseline_rec.get("fingerprint") != base_fp or recipe.baseline > done
                                     or not (out / BASELINE_ARTIFACT).is_file()):
        baseline_rec = None
    if done >= 0:
        model = load(stages_dir / recipe.stages[done].folder / STAGE_ARTIFACT)
        _say(f"resuming {recipe.name} after stage {done} ({recipe.stages[done].name}) in {out}", progress)

    def measure_baseline(m: torch.nn.Module) -> dict:
        path = save(m, out / BASELINE_ARTIFACT, sparse=False, metadata={"dataset": ds_name, "role": "baseline"})
        dense = load(path)
        rec = {"fingerprint": base_fp, "artifact": BASELINE_ARTIFACT,
               "metrics": measure_model(dense, test_data=test, example_inputs=inputs, artifact=path,
                                        settings=recipe.measure, holdout_data=ctx.calib_data)}
        rec["layers"] = _layers(dense)
        _write_json(out / "baseline.json", rec)
        return rec

    if recipe.baseline < 0 and baseline_rec is None:
        _say("measuring the baseline", progress)
        baseline_rec = measure_baseline(model)

    # ---- the stages ------------------------------------------------------
    bar = tqdm(total=len(recipe.stages), initial=nxt, desc=f"{recipe.name}", unit="stage", disable=not progress,
               dynamic_ncols=True)
    for st in recipe.stages[nxt:]:
        sdir = stages_dir / st.folder
        sdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(sdir / "fingerprint.txt", fps[st.index].encode())
        bar.set_postfix_str(f"{st.name} ({st.kind})")
        _say(f"stage {st.index + 1}/{len(recipe.stages)}: {st.name} ({st.kind})", progress)
        ctx.stage_out = sdir
        ctx.loss_fn, ctx.teacher = None, None
        if st.index > recipe.baseline:
            # a fresh copy per stage (trained at most once, then read from disk): a stage's distillation
            # loss may tap the teacher's layers with hooks, which must not carry over to the next stage
            ctx.teacher = _teacher(recipe, out, ctx, progress, test)
            if recipe.distill is not None:
                from ..distill import make_loss

                ctx.loss_fn = make_loss(recipe.distill, ctx.teacher, model)
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed + st.index)
        result = apply_stage(model, st.config, ctx)
        model = result.model
        seconds = time.perf_counter() - t0
        path = save(model, sdir / STAGE_ARTIFACT, metadata={"dataset": ds_name, "stage": st.name})
        artifact = Path(result.artifact) if result.artifact else path
        rec = {"index": st.index, "name": st.name, "kind": st.kind, "config": st.config.to_dict(),
               "fingerprint": fps[st.index], "seconds": seconds,
               "artifact": _rel(artifact, out), "stage_artifact": _rel(path, out),
               "own_artifact": _rel(artifact, out) if result.artifact else None,
               "extras": {k: v for k, v in ((k, _jsonable(v)) for k, v in result.records.items()) if v is not None}}
        rec.update(_measure_stage(model, artifact, test, inputs, recipe, progress, holdout=ctx.calib_data,
                                  reference=_reference(out, test)))
        rec["status"] = "done"
        _write_json(sdir / "stage.json", rec)
        records.append(rec)
        m = rec["metrics"]
        quality = (f"accuracy {m['accuracy']:.4f}" if m["accuracy"] is not None else
                   f"mean cosine {m['fidelity']['mean_cosine']:.4f}, nn agreement {m['fidelity']['nn_agreement']:.3f}")
        _say(f"  {st.name}: {quality}, nonzero {m['nonzero_params']:,}/{m['params']:,}, "
             f"{m['size_bytes']:,} bytes, {seconds:.1f} s", progress)
        if st.index == recipe.baseline:
            baseline_rec = measure_baseline(model)
        bar.update(1)
    bar.close()
    if baseline_rec is None:  # baseline stage finished in an earlier run but its measurement was lost
        baseline_rec = measure_baseline(load(stages_dir / recipe.stages[recipe.baseline].folder / STAGE_ARTIFACT))

    report = _finish(recipe, out, model, ctx, baseline_rec, records, inputs, test, progress)
    if html:
        from ..report.html import write_html

        write_html(report, out / "report.html")
    return report


def _rel(path: Path, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def _teacher(recipe: Recipe, out: Path, ctx=None, progress: bool = False, test=None):
    if recipe.teacher is None:
        return None
    from ..artifact import load

    if recipe.teacher == "baseline":
        path = out / BASELINE_ARTIFACT if recipe.baseline >= 0 or recipe.model.artifact is None \
            else Path(recipe.model.artifact)
        t = load(path)
    elif getattr(recipe.teacher, "train", None) is not None:
        t = _trained_teacher(recipe, out, ctx, progress, test)
    else:
        t = _build_model(recipe.teacher, recipe.data.dataset)
    for p in t.parameters():
        p.requires_grad_(False)
    return t.eval()


def _teacher_fingerprint(recipe: Recipe) -> str:
    d = recipe.to_dict()
    return _hash({"teacher": d["teacher"], "data": d["data"], "seed": d["seed"]})


def _trained_teacher(recipe: Recipe, out: Path, ctx, progress: bool, test):
    """The recipe's own teacher: trained once on the training split into
    ``out/teacher`` (resumed from its last epoch after a kill, retrained when
    the teacher spec, data or seed change), then reused by every stage."""
    from ..analysis.evaluate import evaluate
    from ..artifact import load, save
    from ..artifact.format import atomic_write_bytes
    from ..train import fit

    tdir = out / TEACHER_DIR
    fp = _teacher_fingerprint(recipe)
    path = tdir / STAGE_ARTIFACT
    rec = _read_json(tdir / "teacher.json")
    if rec is not None and rec.get("fingerprint") == fp and rec.get("status") == "done" and path.is_file():
        return load(path)
    fp_file = tdir / "fingerprint.txt"
    if tdir.is_dir() and not (fp_file.is_file() and fp_file.read_text().strip() == fp):
        shutil.rmtree(tdir)  # another teacher's leftovers
    tdir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(fp_file, fp.encode())
    if ctx is None or ctx.train_data is None:
        raise ConfigError("teacher.train: training the teacher needs the recipe's training data")
    spec = recipe.teacher
    _say(f"training the teacher ({spec.zoo or spec.import_path or spec.hf or spec.artifact})", progress)
    torch.manual_seed(recipe.seed)
    model = _build_model(spec, recipe.data.dataset)
    t0 = time.perf_counter()
    result = fit(model, ctx.train_data, spec.train, eval_data=ctx.calib_data, out_dir=tdir, progress=progress)
    seconds = time.perf_counter() - t0
    save(model, path, sparse=False, metadata={"dataset": recipe.data.dataset, "role": "teacher"})
    model = load(path).eval()
    rec = {"fingerprint": fp, "status": "done", "artifact": _rel(path, out), "seconds": seconds,
           "resumed_from": result.resumed_from,
           "params": sum(p.numel() for p in model.parameters()),
           "accuracy": float(evaluate(model, test)["accuracy"])}
    if ctx.calib_data is not None:
        rec["holdout_accuracy"] = float(evaluate(model, ctx.calib_data)["accuracy"])
    _write_json(tdir / "teacher.json", rec)
    _say(f"  teacher: accuracy {rec['accuracy']:.4f}, {rec['params']:,} params, {seconds:.1f} s", progress)
    return model


def _layers(model) -> dict:
    from ..report.layers import layer_stats, weight_histogram

    return {"layers": layer_stats(model), "histogram": weight_histogram(model)}


def _reference(out: Path, test):
    """The baseline model, which a sentence encoder's fidelity is measured
    against (None for labelled data, or before the baseline exists)."""
    from ..artifact import load
    from .measure import is_text_data

    path = out / BASELINE_ARTIFACT
    return load(path) if is_text_data(test) and path.is_file() else None


def _measure_stage(model, artifact: Path, test, inputs, recipe: Recipe, progress: bool, holdout=None,
                   reference=None) -> dict:
    """Measure what is on disk: the model rebuilt from the stage's artifact. If
    that cannot be rebuilt, measure the in-memory model and say so."""
    from ..analysis.evaluate import evaluate
    from ..artifact import load
    from .measure import measure_model

    note = None
    try:
        shipped = load(artifact)
    except Exception as e:  # an artifact this build cannot rebuild: measure the model itself
        shipped, note = model, f"measured in memory; {artifact} could not be loaded: {e}"
    metrics = measure_model(shipped, test_data=test, example_inputs=inputs, artifact=artifact,
                            settings=recipe.measure, holdout_data=holdout, reference=reference)
    out = {"metrics": metrics, **_layers(shipped)}
    if shipped is not model and metrics["accuracy"] is not None:
        mem = evaluate(model, test, batch_size=recipe.measure.eval_batch_size)["accuracy"]
        if abs(mem - metrics["accuracy"]) > 1e-9:
            out["in_memory_accuracy"] = mem
            _say(f"  note: the in-memory model scores {mem:.4f}, its artifact {metrics['accuracy']:.4f}", progress)
    if note:
        out["note"] = note
    return out


def _finish(recipe: Recipe, out: Path, model, ctx, baseline_rec: dict, records: list[dict], inputs, test,
            progress: bool) -> dict:
    from ..artifact import load, save
    from ..artifact.format import atomic_write_bytes
    from ..report.json_report import build_report, write_report
    from .measure import compare_models_latency, measure_model

    produced = next((r["own_artifact"] for r in reversed(records) if r.get("own_artifact")), None)
    if produced and (out / produced).is_file():
        src = out / produced
        final_path = out / f"model{''.join(src.suffixes) or '.bin'}"
        if src.resolve() != final_path.resolve():
            atomic_write_bytes(final_path, src.read_bytes())
    else:
        final_path = save(model, out / "model.safetensors",
                          metadata={"dataset": recipe.data.dataset, "recipe": recipe.name})
    final_model = load(final_path)
    final = measure_model(final_model, test_data=test, example_inputs=inputs, artifact=final_path,
                          settings=recipe.measure, latency=False, holdout_data=ctx.calib_data,
                          reference=_reference(out, test))
    final_layers = _layers(final_model)
    baseline = dict(baseline_rec["metrics"])
    paired = None
    if recipe.measure.latency:
        _say("timing baseline and final alternately", progress)
        base_model = load(out / BASELINE_ARTIFACT)
        paired = compare_models_latency(base_model, final_model, inputs, recipe.measure)
        baseline["latency_ms"] = float(paired["a_median_ms"])
        final["latency_ms"] = float(paired["b_median_ms"])
        final["latency_threads"] = baseline["latency_threads"] = recipe.measure.threads
    report = build_report(recipe=recipe, baseline=baseline, baseline_layers=baseline_rec.get("layers"),
                          final=final, final_layers=final_layers, artifact=_rel(final_path, out),
                          stages=records, paired_latency=paired)
    if recipe.measure.robustness:
        from ..analysis.robustness import compare

        _say("measuring robustness of the final model against the baseline", progress)
        report["robustness"] = compare(load(out / BASELINE_ARTIFACT), final_model, test, seed=recipe.data.seed,
                                       severities=recipe.measure.robustness_severities,
                                       batch_size=recipe.measure.eval_batch_size,
                                       limit=recipe.measure.robustness_limit, sensitivity="restore",
                                       sensitivity_data=ctx.calib_data)
    teacher = _read_json(out / TEACHER_DIR / "teacher.json")
    if teacher is not None and getattr(recipe.teacher, "train", None) is not None \
            and teacher.get("fingerprint") == _teacher_fingerprint(recipe):
        report["teacher"] = {k: v for k, v in teacher.items() if k not in ("fingerprint", "status")}
    write_report(report, out / "report.json")
    return report
