"""Model cards rendered as Markdown from a checkpoint's header and an evaluation.

The numbers come from :mod:`ecnf.evaluation` (``evaluate_2d``, ``evaluate_image_checkpoint``)
and the checkpoint's own record (command, steps, wall time, hardware); this module only lays
them out, so ``scripts/make_cards.py`` can regenerate every card and a test can recompute any
row and compare the text.
"""

from __future__ import annotations

__all__ = ["render_card", "render_image_card", "results_table"]


def _fmt(value, digits=4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _training_record(info: dict) -> list[str]:
    """The card section read from the checkpoint header: command, budget, hardware, file."""
    meta, model = info["metadata"], info["model_config"]
    params = info.get("tensors", {}).get("model", {}).get("numel")
    lines = [
        "## Training record (read from the checkpoint)",
        "",
        f"- Command: `{meta.get('command')}`",
    ]
    lines += [f"- Resumed with: `{c}`" for c in meta.get("resumed_with") or []]
    lines += [
        f"- Steps: {meta.get('steps')}, batch {meta.get('batch_size')}, "
        f"wall time {meta.get('wall_time_s')} s on {meta.get('hardware')}",
        f"- Versions: {meta.get('versions')}",
        f"- Network: `{model.get('arch')}` {model}, {params} parameters",
        f"- File: {info['file_bytes'] / 1e6:.2f} MB, weights `{meta.get('weights', 'raw')}`",
        "",
    ]
    return lines


def render_card(name: str, info: dict, evaluation: dict) -> str:
    """Markdown model card from :func:`~ecnf.checkpoint.checkpoint_info` and an evaluation."""
    meta = info["metadata"]
    lines = [
        f"# {name}",
        "",
        f"A continuous normalizing flow from `{evaluation['source']}` noise to "
        f"`{evaluation['data']}`, trained with the `{meta.get('loss')}` objective.",
        "",
        *_training_record(info),
        "## Sample quality against the number of function evaluations (NFE)",
        "",
        f"Exact Wasserstein-2 distance (POT-equivalent exact assignment) and unbiased MMD² "
        f"(sum of RBF kernels) between {evaluation['num_samples']} samples and "
        f"{evaluation['num_samples']} fresh data points, seed {evaluation['seed']}. "
        f"Floor: the same metrics between two fresh data sets "
        f"(W2 {_fmt(evaluation['floor']['w2'])}, "
        f"MMD² {_fmt(evaluation['floor']['mmd2'], 5)}).",
        "",
        "| solver | steps | NFE | W2 | MMD² | solve time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in evaluation["rows"]:
        lines.append(
            f"| {r['method']} | {r['steps'] if r['steps'] is not None else 'adaptive'} | "
            f"{r['nfe']} | {_fmt(r['w2'])} | {_fmt(r['mmd2'], 5)} | {r['seconds']:.3f} |"
        )
    lines += [
        "",
        "Regenerate with `python scripts/make_cards.py` (solve times are wall-clock on the "
        "machine that ran it and vary with load).",
        "",
    ]
    return "\n".join(lines)


def results_table(evaluations: dict[str, dict]) -> str:
    """One markdown row per checkpoint: W2 at a few budgets and adaptive, beside the floor."""
    cols = [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 10), ("rk4", 1), ("rk4", 5)]
    header = " | ".join(f"{m} {s} step{'s' if s > 1 else ''}" for m, s in cols)
    lines = [
        f"| checkpoint | {header} | dopri5 (NFE) | data floor |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for name, ev in evaluations.items():
        by_key = {(r["method"], r["steps"]): r for r in ev["rows"]}
        cells = [_fmt(by_key[c]["w2"]) if c in by_key else "n/a" for c in cols]
        adaptive = [r for r in ev["rows"] if r["steps"] is None]
        ad = f"{_fmt(adaptive[0]['w2'])} ({adaptive[0]['nfe']})" if adaptive else "n/a"
        lines.append(f"| {name} | {' | '.join(cells)} | {ad} | {_fmt(ev['floor']['w2'])} |")
    return "\n".join(lines)


def _conditional(info: dict) -> str:
    classes = info["model_config"].get("num_classes", 0)
    if not classes:
        return ""
    drop = ((info.get("train_state") or {}).get("config") or {}).get("cond_drop")
    dropout = f", labels dropped at rate {drop:g}" if drop is not None else ""
    return f"class-conditional ({classes} classes{dropout}; guided by `--label`, `--guidance`) "


def _guidance_lines(evaluation: dict, keys: list[str]) -> list[str]:
    """The card's classifier-free guidance table, for a class-conditional model."""
    guidance = evaluation.get("guidance")
    if not guidance:
        return []
    lines = [
        "",
        "## Classifier-free guidance: quality and class fidelity against the scale w",
        "",
        f"{guidance['num_samples']} samples per scale, every class in turn, from the same "
        f"noise (seed {guidance['seed']}), {guidance['solver']} with {guidance['steps']} "
        "steps. w = 0 is the unconditional model, w = 1 the conditional one; beyond 1 each "
        "step evaluates both, so the NFE doubles. Accuracy: the share of samples that "
        f"`{evaluation['feature_net']}` assigns to the class they were drawn for (on the "
        f"real test images it scores {guidance['real_accuracy']:.4f}).",
        "",
        "| w | NFE | accuracy | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for r in guidance["rows"]:
        cells = " | ".join(_fmt(r[k]) for k in keys)
        lines.append(f"| {r['scale']:g} | {r['nfe']} | {r['accuracy']:.4f} | {cells} |")
    return lines


def render_image_card(name: str, info: dict, evaluation: dict) -> str:
    """Markdown model card for an image checkpoint (metrics named after their feature net)."""
    meta = info["metadata"]
    names = evaluation["metrics"]
    keys = [names[k] for k in ("fd", "kid", "is") if k in names] + ["sample_entropy"]
    floor = evaluation["floor"]
    lines = [
        f"# {name}",
        "",
        f"A {_conditional(info)}continuous normalizing flow from Gaussian noise to "
        f"`{evaluation['data']}` images, trained with the `{meta.get('loss')}` objective.",
        "",
        *_training_record(info),
        "## Sample quality against the number of function evaluations (NFE)",
        "",
        f"{evaluation['num_samples']} samples against {evaluation['num_samples']} real test "
        f"images (seed {evaluation['seed']}), features of `{evaluation['feature_net']}`"
        + (
            " (Inception-v3: standard FID/KID/IS)."
            if evaluation["feature_net"] == "inception-v3"
            else " (the project's shipped classifier, not Inception: these are not FID/IS and "
            "are not comparable with published FIDs)."
        ),
        "Floor (real test images against real training images, same size): "
        + ", ".join(f"{k} {_fmt(floor[k])}" for k in keys)
        + ".",
        "",
        "| solver | steps | NFE | " + " | ".join(keys) + " | sampling time (s) |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for r in evaluation["rows"]:
        steps = r["steps"] if r["steps"] is not None else "adaptive"
        cells = " | ".join(_fmt(r[k]) for k in keys)
        lines.append(f"| {r['method']} | {steps} | {r['nfe']} | {cells} | {r['seconds']:.1f} |")
    lines += _guidance_lines(evaluation, keys)
    where = evaluation.get("sampler_device")
    lines += [
        "",
        (f"Samples drawn and timed on {where}. " if where else "")
        + "Regenerate with `python scripts/make_cards.py` (times vary with load).",
        "",
    ]
    return "\n".join(lines)
