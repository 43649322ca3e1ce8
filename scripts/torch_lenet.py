"""What the PyTorch-side scripts share: the paper's LeNet (METHOD.md §4.3) and VGG11
(METHOD.md §4.4, src/models/vgg11.rs) in PyTorch's own layers, and readers of
(Fashion-)MNIST IDX .gz files and CIFAR-10 binary batches. Imported by
scripts/reference_lenet.py, scripts/bench_torch.py and scripts/bench_torch_gpu.py."""
import gzip

import numpy as np
import torch.nn as nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 10, 5)
        self.fc1 = nn.Linear(160, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class VGG11(nn.Module):
    """Parameter order and names as src/models/vgg11.rs (D = 9,750,922)."""

    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for w in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if w == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
                c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def read_cifar(path, n):
    """(images N × 3 × 32 × 32 uint8, labels) of the first n records of a CIFAR-10 batch."""
    raw = np.fromfile(path, dtype=np.uint8)[: n * 3073].reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def read_idx(path, magic, dims):
    """(dimensions, bytes) of an IDX .gz file, its magic number checked."""
    raw = gzip.open(path).read()
    header = np.frombuffer(raw[: 4 * (1 + dims)], dtype=">u4")
    assert header[0] == magic, f"{path}: magic {header[0]:#x}"
    return header[1:].astype(int), np.frombuffer(raw[4 * (1 + dims):], dtype=np.uint8)
