"""What the PyTorch-side scripts share: the paper's LeNet (METHOD.md §4.3) in PyTorch's own
layers, and a reader of (Fashion-)MNIST IDX .gz files. Imported by
scripts/reference_lenet.py and scripts/bench_torch.py."""
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


def read_idx(path, magic, dims):
    """(dimensions, bytes) of an IDX .gz file, its magic number checked."""
    raw = gzip.open(path).read()
    header = np.frombuffer(raw[: 4 * (1 + dims)], dtype=">u4")
    assert header[0] == magic, f"{path}: magic {header[0]:#x}"
    return header[1:].astype(int), np.frombuffer(raw[4 * (1 + dims):], dtype=np.uint8)
