"""The detector network, its training targets and losses (torch; training extra only).

An anchor-free, CenterNet/TTFNet-style single-stage detector of about 0.9 M parameters:
a plain Conv-BN-ReLU backbone with residual blocks down to stride 32, a top-down FPN
back to stride 4 (so 6–8 px objects still own a cell), and two heads — a per-class
centre heatmap (focal loss on Gaussian targets) and ``ltrb`` distances from the cell
centre as ``exp(x) · stride`` (GIoU loss, weighted by the Gaussian × log(area)).

:class:`ExportWrapper` turns the two heads into the YOLOv8 output layout ``1×(4+nc)×N``
with 3×3 max-pool peak suppression inside the graph, so any YOLOv8 decoder works. It
uses exactly the box parameterisation the loss trains (the export must be evaluated
end to end: a mismatch here scores 0 while torch/onnxruntime parity looks perfect).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
ALPHA = 0.54  # Gaussian radius factor (TTFNet)
BOX_WEIGHT = 5.0
MAX_LOG = 8.0  # exp() clamp for ltrb


class ConvBN(nn.Sequential):
    """Conv → BatchNorm → ReLU (ReLU optional)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Residual(nn.Module):
    """Two 3×3 convs with an identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a, self.b = ConvBN(c, c), ConvBN(c, c, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(self.a(x)))


class Net(nn.Module):
    """Backbone + FPN + heads; returns (heatmap logits, ltrb logits) at stride 4."""

    def __init__(self, classes: int = 6, width: int = 32) -> None:
        super().__init__()
        self.stem = ConvBN(3, 16, 3, 2)
        self.s2 = nn.Sequential(ConvBN(16, 32, 3, 2), Residual(32))
        self.s3 = nn.Sequential(ConvBN(32, 64, 3, 2), Residual(64))
        self.s4 = nn.Sequential(ConvBN(64, 96, 3, 2), Residual(96))
        self.s5 = nn.Sequential(ConvBN(96, 128, 3, 2), Residual(128))
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (32, 64, 96, 128)])
        self.smooth = nn.ModuleList([ConvBN(width, width) for _ in range(3)])
        self.heat = nn.Sequential(ConvBN(width, width), nn.Conv2d(width, classes, 1))
        self.box = nn.Sequential(ConvBN(width, width), nn.Conv2d(width, 4, 1))
        nn.init.constant_(self.heat[-1].bias, -math.log((1 - 0.1) / 0.1))  # prior 0.1: stable focal-loss start

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c2 = self.s2(self.stem(x))
        c3 = self.s3(c2)
        c4 = self.s4(c3)
        c5 = self.s5(c4)
        p = self.lateral[3](c5)
        for level, c in ((2, c4), (1, c3), (0, c2)):
            p = self.smooth[2 - level](self.lateral[level](c) + F.interpolate(p, size=c.shape[-2:], mode="nearest"))
        return self.heat(p), self.box(p)


def cell_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-pixel centres of the stride-4 grid cells, shaped 1×1×H×W."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * STRIDE
    return xs.view(1, 1, 1, w).expand(1, 1, h, w), ys.view(1, 1, h, 1).expand(1, 1, h, w)


def ltrb_to_xyxy(raw: torch.Tensor) -> torch.Tensor:
    """B×4×H×W ltrb logits → B×4×H×W xyxy boxes in input pixels."""
    _, _, h, w = raw.shape
    cx, cy = cell_centres(h, w, raw.device)
    d = torch.exp(raw.clamp(max=MAX_LOG)) * STRIDE
    return torch.cat([cx - d[:, 0:1], cy - d[:, 1:2], cx + d[:, 2:3], cy + d[:, 3:4]], dim=1)


def build_targets(
    boxes: torch.Tensor, batch: int, classes: int, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmap (B×C×H×W), regression boxes (B×4×H×W) and weights (B×H×W) from rows (img, cls, x1, y1, x2, y2)."""
    device = boxes.device
    heat = torch.zeros(batch * classes, h * w, device=device)
    reg = torch.zeros(batch, h * w, 4, device=device)
    weight = torch.zeros(batch, h * w, device=device)
    if len(boxes) == 0:
        return heat.view(batch, classes, h, w), reg.permute(0, 2, 1).reshape(batch, 4, h, w), weight.view(batch, h, w)
    img, cls = boxes[:, 0].long(), boxes[:, 1].long()
    x1, y1, x2, y2 = boxes[:, 2], boxes[:, 3], boxes[:, 4], boxes[:, 5]
    bw, bh = (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
    cx = ((x1 + x2) / 2 / STRIDE).floor().clamp(0, w - 1)
    cy = ((y1 + y2) / 2 / STRIDE).floor().clamp(0, h - 1)
    sx, sy = (ALPHA * bw / 6).clamp(min=0.3), (ALPHA * bh / 6).clamp(min=0.3)
    gx = torch.arange(w, device=device, dtype=torch.float32)
    gy = torch.arange(h, device=device, dtype=torch.float32)
    g = torch.exp(
        -((gx[None, None, :] - cx[:, None, None]) ** 2) / (2 * sx[:, None, None] ** 2)
        - ((gy[None, :, None] - cy[:, None, None]) ** 2) / (2 * sy[:, None, None] ** 2)
    ).view(len(boxes), h * w)
    heat.scatter_reduce_(0, (img * classes + cls)[:, None].expand(-1, h * w), g, "amax")
    # Each cell regresses the box whose Gaussian is strongest there.
    best = torch.zeros(batch, h * w, device=device).scatter_reduce_(0, img[:, None].expand(-1, h * w), g, "amax")
    owned = (g >= best[img]) & (g > 0.1)
    m_idx, cell = owned.nonzero(as_tuple=True)
    area = ((x2 - x1) * (y2 - y1)).clamp(min=1)
    totals = torch.zeros(len(boxes), device=device).index_add_(0, m_idx, g[m_idx, cell])
    reg[img[m_idx], cell] = boxes[m_idx, 2:6]
    weight[img[m_idx], cell] = g[m_idx, cell] * torch.log(area[m_idx] + 1) / totals[m_idx].clamp(min=1e-6)
    return (
        heat.view(batch, classes, h, w),
        reg.permute(0, 2, 1).reshape(batch, 4, h, w),
        weight.view(batch, h, w),
    )


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matching xyxy boxes (N×4)."""
    ix1, iy1 = torch.max(a[:, 0], b[:, 0]), torch.max(a[:, 1], b[:, 1])
    ix2, iy2 = torch.min(a[:, 2], b[:, 2]), torch.min(a[:, 3], b[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    union = area_a + area_b - inter + 1e-6
    cx1, cy1 = torch.min(a[:, 0], b[:, 0]), torch.min(a[:, 1], b[:, 1])
    cx2, cy2 = torch.max(a[:, 2], b[:, 2]), torch.max(a[:, 3], b[:, 3])
    hull = (cx2 - cx1) * (cy2 - cy1) + 1e-6
    return inter / union - (hull - union) / hull


def detection_loss(
    heat_logits: torch.Tensor, box_logits: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, heatmap focal, box GIoU) for a batch."""
    b, c, h, w = heat_logits.shape
    heat_t, reg_t, weight = build_targets(boxes, b, c, h, w)
    hm = focal_loss(heat_logits.float(), heat_t)
    mask = weight > 0
    if mask.any():
        pred = ltrb_to_xyxy(box_logits.float()).permute(0, 2, 3, 1)[mask]
        target = reg_t.permute(0, 2, 3, 1)[mask]
        wts = weight[mask]
        box = ((1 - giou(pred, target)) * wts).sum() / wts.sum().clamp(min=1e-6)
    else:
        box = heat_logits.sum() * 0
    return hm + BOX_WEIGHT * box, hm, box


class ExportWrapper(nn.Module):
    """The deployable graph: RGB 0–1 NCHW in, YOLOv8 layout ``1×(4+nc)×N`` out."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heat, box = self.net(x)
        scores = torch.sigmoid(heat)
        peaks = (F.max_pool2d(scores, 3, 1, 1) == scores).to(scores.dtype)
        scores = scores * peaks
        xyxy = ltrb_to_xyxy(box)
        cxcy = (xyxy[:, 0:2] + xyxy[:, 2:4]) / 2
        wh = xyxy[:, 2:4] - xyxy[:, 0:2]
        out = torch.cat([cxcy, wh, scores], dim=1)
        return out.flatten(2)
