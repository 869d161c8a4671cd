"""Tiny user-style model factories that the entry-point tests import."""

from __future__ import annotations

from torch import nn


def tiny_mlp(*, features: int = 4, hidden: int = 8, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def not_a_model() -> str:
    return "a string"


def broken_factory() -> nn.Module:
    raise RuntimeError("factory exploded")


NOT_CALLABLE = 3


class Classifier(nn.Module):
    """A user class with its own attribute names: artifacts must keep them."""

    def __init__(self, features: int = 30, classes: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Linear(features, 24)
        self.head = nn.Linear(24, classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.encoder(x).relu())


def classifier(*, features: int = 30, classes: int = 2) -> nn.Module:
    return Classifier(features, classes)


class TokenClassifier(nn.Module):
    """Embeds integer token ids, averages them and classifies: needs int64 inputs."""

    def __init__(self, vocab: int = 16, dim: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, ids):  # type: ignore[no-untyped-def]
        return self.head(self.hidden(self.embed(ids).mean(dim=1)).relu())


def token_classifier(*, vocab: int = 16, dim: int = 8, classes: int = 2) -> nn.Module:
    return TokenClassifier(vocab, dim, classes)
