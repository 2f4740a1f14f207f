"""Elastic plans of the zoo CNNs (``torchslim.zoo.models``): ``resnet8``
(``ResNetSmall``) and ``mobilenetv2`` (``MobileNetV2Small``).

ResNet: each stage's residual stream is one group (the stem's output joins
the first stage's stream when its first block has an identity shortcut); each
basic block's middle width is an inner group. A block with an identity
shortcut (stride 1, same width) may be skipped if all the blocks after it in
its stage may be too.

MobileNetV2: the stem, each stage's residual stream and the final 1x1 conv
are groups; each inverted residual's expansion is an inner group (with its
depthwise conv, whose kernel may be elastic). Blocks with a residual
shortcut may be skipped at the end of a stage.
"""
from __future__ import annotations

import torch.nn as nn

from ..zoo.models import BasicBlock, InvertedResidual, MobileNetV2Small, ResNetSmall
from .plan import ElasticPlan, GroupPlan, StagePlan, register_elastic_plan

__all__: list[str] = []


def _stages(blocks: list[tuple[str, bool]], parent_of=None) -> list[StagePlan]:
    """Stages from blocks in forward order, each with whether it may be
    skipped: a block that may not starts a new stage (also at a change of
    ``parent_of(path)``); skippable blocks extend the current one."""
    stages: list[StagePlan] = []
    for path, skippable in blocks:
        parent = parent_of(path) if parent_of else None
        new = not stages or not skippable or (parent_of is not None and parent_of(stages[-1].blocks[0]) != parent)
        if new:
            stages.append(StagePlan(name=path, blocks=[path], min_depth=0 if skippable else 1))
        else:
            stages[-1].blocks.append(path)
    return stages


@register_elastic_plan(ResNetSmall)
def resnet_plan(model: ResNetSmall) -> ElasticPlan:
    cur = GroupPlan("stem", model.stem[0].out_channels, producers=["stem.0"], norms=["stem.1"])
    groups = [cur]
    blocks: list[tuple[str, bool]] = []
    for sname in ("layer1", "layer2", "layer3"):
        for i, blk in enumerate(getattr(model, sname)):
            p = f"{sname}.{i}"
            assert isinstance(blk, BasicBlock)
            groups.append(GroupPlan(f"{p}.mid", blk.conv1.out_channels, producers=[f"{p}.conv1"], norms=[f"{p}.bn1"],
                                    consumers=[f"{p}.conv2"], inner=True, block=p))
            cur.consumers.append(f"{p}.conv1")
            if blk.downsample is not None:
                cur.consumers.append(f"{p}.downsample.0")
                cur = GroupPlan(sname if i == 0 else p, blk.conv2.out_channels,
                                producers=[f"{p}.conv2", f"{p}.downsample.0"], norms=[f"{p}.bn2", f"{p}.downsample.1"])
                groups.append(cur)
            else:
                cur.producers.append(f"{p}.conv2")
                cur.norms.append(f"{p}.bn2")
            blocks.append((p, blk.downsample is None and tuple(blk.conv1.stride) == (1, 1)))
    cur.consumers.append("fc")
    for g in groups:  # a skippable block's middle width is moot when it is skipped
        if g.inner and not dict(blocks).get(g.block, False):
            g.block = None
    units = [("stem", ["to_image", "norm", "stem"])] + [(p, [p]) for p, _ in blocks] + \
            [("head", ["pool", "flatten", "fc"])]
    return ElasticPlan(groups=groups, stages=_stages(blocks, parent_of=lambda p: p.split(".")[0]), kernels={},
                       units=units)


def _ir_layers(blk: InvertedResidual) -> dict[str, int]:
    """Indices of an inverted residual's layers inside ``blk.conv``."""
    convs = [i for i, m in enumerate(blk.conv) if isinstance(m, nn.Conv2d)]
    if len(convs) == 3:
        return {"expand": convs[0], "dw": convs[1], "project": convs[2]}
    return {"dw": convs[0], "project": convs[1]}


@register_elastic_plan(MobileNetV2Small)
def mobilenet_plan(model: MobileNetV2Small) -> ElasticPlan:
    feats = model.features
    cur = GroupPlan("features.0", feats[0][0].out_channels, producers=["features.0.0"], norms=["features.0.1"])
    groups = [cur]
    blocks: list[tuple[str, bool]] = []
    kernels: dict[str, str | None] = {}
    for i in range(1, len(feats) - 1):
        blk = feats[i]
        assert isinstance(blk, InvertedResidual)
        p, ix = f"features.{i}", _ir_layers(blk)
        dw, proj = f"{p}.conv.{ix['dw']}", f"{p}.conv.{ix['project']}"
        if "expand" in ix:
            e = f"{p}.conv.{ix['expand']}"
            cur.consumers.append(e)
            groups.append(GroupPlan(f"{p}.hidden", blk.conv[ix["expand"]].out_channels, producers=[e],
                                    norms=[f"{p}.conv.{ix['expand'] + 1}", f"{p}.conv.{ix['dw'] + 1}"],
                                    depthwise=[dw], consumers=[proj], inner=True, block=p))
        else:  # no expansion: the depthwise conv works on the incoming stream
            cur.depthwise.append(dw)
            cur.norms.append(f"{p}.conv.{ix['dw'] + 1}")
            cur.consumers.append(proj)
        kernels[dw] = p
        if blk.use_res:
            cur.producers.append(proj)
            cur.norms.append(f"{p}.conv.{ix['project'] + 1}")
        else:
            cur = GroupPlan(p, blk.conv[ix["project"]].out_channels, producers=[proj],
                            norms=[f"{p}.conv.{ix['project'] + 1}"])
            groups.append(cur)
        blocks.append((p, bool(blk.use_res)))
    last = f"features.{len(feats) - 1}"
    cur.consumers.append(f"{last}.0")
    groups.append(GroupPlan(last, feats[-1][0].out_channels, producers=[f"{last}.0"], norms=[f"{last}.1"],
                            consumers=["classifier"]))
    skippable = dict(blocks)
    for g in groups:
        if g.inner and not skippable.get(g.block, False):
            g.block = None
    kernels = {k: (b if skippable.get(b, False) else None) for k, b in kernels.items()}
    units = [("stem", ["to_image", "norm", "features.0"])] + [(p, [p]) for p, _ in blocks] + \
            [("head", [last, "pool", "flatten", "classifier"])]
    return ElasticPlan(groups=groups, stages=_stages(blocks), kernels=kernels, units=units)
