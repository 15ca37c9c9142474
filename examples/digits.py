"""Handwritten digits from 8x8 images: a small PyTorch CNN served by modelserve.

    modelserve serve examples/digits.py

Two services share the network: `digits` takes the pixels as JSON, `digits-raw` takes the image
itself as the request body (`Content-Type: application/octet-stream`, 64 bytes, one per pixel),
as a camera or a scanner would send it.

The first start trains the network on scikit-learn's bundled digits data (1,797 images, no
download; a few seconds on two CPU cores) and saves its `state_dict` under
`$MODELSERVE_DATA_DIR/models/digits/`. Later starts load it with `torch.load(weights_only=True)`,
which only rebuilds tensors and plain containers and never runs code from the file. A file that
cannot be loaded (damaged, from another architecture, or not a plain state dict) is replaced by
training again.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from torch import nn

from modelserve import ItemError, Service, batching

logger = logging.getLogger("examples.digits")

SEED = 0
TEST_SIZE = 0.25
EPOCHS = 12
BATCH_SIZE = 128
LEARNING_RATE = 1e-2
# scikit-learn's digits are 8x8 images whose pixels count dark cells of a 4x4 block: 0..16.
SIDE = 8
MAX_PIXEL = 16.0
# Bumped whenever the architecture changes, so an old state dict is not even tried.
FORMAT_VERSION = 1

Pixel = Annotated[float, Field(ge=0, le=MAX_PIXEL)]
Row = Annotated[list[Pixel], Field(min_length=SIDE, max_length=SIDE)]


class Image(BaseModel):
    """One 8x8 grey-scale digit: 8 rows of 8 pixel intensities from 0 (white) to 16 (black)."""

    pixels: Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE)] = Field(
        description="8 rows of 8 values in 0..16, as in sklearn.datasets.load_digits",
        examples=[
            [
                [0, 0, 5, 13, 9, 1, 0, 0],
                [0, 0, 13, 15, 10, 15, 5, 0],
                [0, 3, 15, 2, 0, 11, 8, 0],
                [0, 4, 12, 0, 0, 8, 8, 0],
                [0, 5, 8, 0, 0, 9, 8, 0],
                [0, 4, 11, 0, 1, 12, 7, 0],
                [0, 2, 14, 5, 10, 12, 0, 0],
                [0, 0, 6, 13, 10, 0, 0, 0],
            ]
        ],
    )


class Digit(BaseModel):
    """The most likely digit and the probability of each digit 0..9."""

    digit: int = Field(ge=0, le=9)
    probabilities: list[float] = Field(
        min_length=10, max_length=10, description="probabilities[d] is the probability of d"
    )


class DigitsNet(nn.Module):
    """Two 3x3 convolutions, one 2x2 pooling and two dense layers: ~38k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * (SIDE // 2) ** 2, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (n, 10) for images (n, 1, 8, 8) scaled to 0..1."""
        logits: torch.Tensor = self.classifier(self.features(images))
        return logits


def to_tensor(pixels: NDArray[Any] | list[Any]) -> torch.Tensor:
    """(n, 64) or (n, 8, 8) raw pixels -> the network's (n, 1, 8, 8) float input in 0..1."""
    array = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, SIDE, SIDE)
    return torch.from_numpy(array / MAX_PIXEL)


def split() -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The fixed, stratified train/held-out split: (X_train, X_test, y_train, y_test).

    X rows are the 64 pixels of an image, row by row.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    parts: list[NDArray[Any]] = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    x_train, x_test, y_train, y_test = parts
    return x_train, x_test, y_train, y_test


def evaluate(net: DigitsNet, images: NDArray[Any], labels: NDArray[Any]) -> float:
    """Accuracy of `net` on raw (n, 64) images."""
    net.eval()
    with torch.inference_mode():
        predicted = net(to_tensor(images)).argmax(dim=1).numpy()
    return float((predicted == labels).mean())


def train() -> tuple[DigitsNet, float]:
    """Train on the training split; return the network and its held-out accuracy.

    Seeded, and on a private RNG state so the server's global torch RNG is left as it was.
    """
    x_train, x_test, y_train, y_test = split()
    inputs = to_tensor(x_train)
    targets = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        net = DigitsNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        order = torch.Generator().manual_seed(SEED)
        net.train()
        for _ in range(EPOCHS):
            permutation = torch.randperm(len(inputs), generator=order)
            for start in range(0, len(inputs), BATCH_SIZE):
                index = permutation[start : start + BATCH_SIZE]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(net(inputs[index]), targets[index])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    return net, evaluate(net, x_test, y_test)


def weights_path() -> Path:
    """Where the trained state dict is stored (read once, when the service starts)."""
    data_dir = Path(os.environ.get("MODELSERVE_DATA_DIR", ".modelserve"))
    return data_dir / "models" / "digits" / f"cnn-v{FORMAT_VERSION}.pt"


def save(net: DigitsNet, path: Path) -> None:
    """Write the state dict atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> DigitsNet:
    """Rebuild the network from a saved state dict; raise ValueError if the file is unusable."""
    try:
        # weights_only=True: tensors and plain containers only; a pickled object is refused.
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = DigitsNet()
        net.load_state_dict(state)  # strict: every key and shape must match
    except Exception as exc:
        raise ValueError(f"cannot use {path}: {exc}") from exc
    if not all(torch.isfinite(t).all() for t in net.state_dict().values()):
        raise ValueError(f"cannot use {path}: non-finite weights")
    return net


# Both services start at once on a first run: one trains and saves, the other then loads.
_training = threading.Lock()


def load_or_train(path: Path) -> DigitsNet:
    """The saved network, or a freshly trained one (then saved) when there is none usable."""
    with _training:
        if path.exists():
            try:
                return load(path)
            except ValueError as exc:
                logger.warning("%s; training again", exc)
        net, accuracy = train()
        logger.info("trained digits CNN, held-out accuracy %.3f", accuracy)
        save(net, path)
        return net


def classify(net: DigitsNet, device: str, pixels: NDArray[Any] | list[Any]) -> list[Digit]:
    """The digit and probabilities of each image, given as 64 or 8x8 raw pixels."""
    images = to_tensor(pixels).to(device)
    with torch.inference_mode():
        probabilities = torch.softmax(net(images), dim=1).cpu().numpy()
    best = probabilities.argmax(axis=1).tolist()
    return [
        Digit(digit=digit, probabilities=row)
        for digit, row in zip(best, probabilities.tolist(), strict=True)
    ]


class Digits(Service[Image, Digit]):
    """Recognise a handwritten digit (0-9) in an 8x8 grey-scale image.

    A small convolutional network trained on the UCI optical digits set bundled with
    scikit-learn. Send the 8x8 pixel grid with values 0..16; get the digit and the probability
    of each of the ten digits.
    """

    name = "digits"
    # One forward pass costs about the same for 1 or 64 images (framework overhead dominates),
    # so a short wait to fill a batch pays off under load and costs at most 1 ms when idle.
    batching = batching(max_batch_size=64, max_wait_ms=1)

    def setup(self, device: str) -> None:
        self.device_name = device
        self.net = load_or_train(weights_path()).to(device).eval()
        # One call now, so the first client does not pay for lazy kernel initialisation.
        self.predict([Image(pixels=[[0.0] * SIDE] * SIDE)])

    def predict(self, batch: list[Image]) -> list[Digit]:
        return classify(self.net, self.device_name, [image.pixels for image in batch])


class RawImage(BaseModel):
    """One 8x8 digit as 64 bytes, row by row, each 0 (white) to 16 (black).

    One `bytes` field: modelserve then also takes these bytes as the whole request body with
    `Content-Type: application/octet-stream`.
    """

    image: bytes = Field(min_length=SIDE * SIDE, max_length=SIDE * SIDE)


class DigitsRaw(Service[RawImage, Digit]):
    """Recognise a handwritten digit sent as the raw 64 bytes of its 8x8 image.

    The same network as `digits`. POST the 64 pixel bytes (values 0..16) as the body with
    `Content-Type: application/octet-stream`; a byte above 16 is refused for that image alone.
    """

    name = "digits-raw"
    batching = batching(max_batch_size=64, max_wait_ms=1)

    def setup(self, device: str) -> None:
        self.device_name = device
        self.net = load_or_train(weights_path()).to(device).eval()
        self.predict([RawImage(image=bytes(SIDE * SIDE))])

    def predict(self, batch: list[RawImage]) -> list[Digit | ItemError]:
        pixels = np.frombuffer(b"".join(item.image for item in batch), dtype=np.uint8)
        pixels = pixels.reshape(len(batch), SIDE * SIDE)
        in_range: NDArray[np.bool_] = np.all(pixels <= MAX_PIXEL, axis=1)
        valid = [bool(ok) for ok in in_range]
        answers = iter(classify(self.net, self.device_name, pixels[valid]) if any(valid) else [])
        return [
            next(answers)
            if ok
            else ItemError("pixel values must be 0..16 (one byte per pixel)", code="bad_pixel")
            for ok in valid
        ]
