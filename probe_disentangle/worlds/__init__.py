"""Worlds whose true generative factors are known: sprites, a factor language, K factors, digits.

The generators implement ``World`` (disentanglement_lib's ground-truth-data protocol plus C-order
index maps and a torch ``Dataset``); ``WORLDS`` maps a name to its class for configs and the CLI.
The digits are a fixed, labelled sample instead (``digit_images``: scikit-learn's bundled 8×8 set).
"""

from __future__ import annotations

from probe_disentangle.worlds.base import RandomState, World, WorldDataset, as_random_state
from probe_disentangle.worlds.digits import digit_images
from probe_disentangle.worlds.factor_language import FactorLanguage, ParseError, Tokenizer
from probe_disentangle.worlds.k_factors import KFactorImages, KFactorTokens
from probe_disentangle.worlds.sprites import ColourSprites, Sprites
from probe_disentangle.worlds.sprites_readout import SpritesReadout, SpritesReadoutConfig, load_sprites_readout

WORLDS: dict[str, type[World]] = {
    "sprites": Sprites,
    "colour_sprites": ColourSprites,
    "factor_language": FactorLanguage,
    "k_factor_images": KFactorImages,
    "k_factor_tokens": KFactorTokens,
}


def make_world(name: str, **kwargs: object) -> World:
    """Build a world by its ``WORLDS`` name; unknown names list the known ones."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; known worlds: {sorted(WORLDS)}")
    return WORLDS[name](**kwargs)


__all__ = [
    "WORLDS",
    "ColourSprites",
    "FactorLanguage",
    "KFactorImages",
    "KFactorTokens",
    "ParseError",
    "RandomState",
    "Sprites",
    "SpritesReadout",
    "SpritesReadoutConfig",
    "Tokenizer",
    "World",
    "WorldDataset",
    "as_random_state",
    "digit_images",
    "load_sprites_readout",
    "make_world",
]
