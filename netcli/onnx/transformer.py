"""transformer_encoder: its blocks in a row; each block the layer's own sub-layers, wired as in its forward.

    post-norm:  h = norm1(x + drop1(attn(x)));   y = norm2(h + ffn(h))
    pre-norm:   h = x + drop1(attn(norm1(x)));   y = h + ffn(norm2(h))

Dropout is the identity (eval mode); the norms and the feed-forward network
work on the last axis, so they take (N, T, D) as they are.
"""
from .convert import convert, converter


@converter("encoder_block")
def encoder_block(g, layer, x, prefix):
    def sub(name, z):
        return convert(g, layer.children[name], z, f"{prefix}{name}.")

    def attn(z):
        return sub("drop1", sub("attn", z))

    if layer.config.norm_first:
        h = g.op("Add", x, attn(sub("norm1", x)))
        return g.op("Add", h, sub("ffn", sub("norm2", h)))
    h = sub("norm1", g.op("Add", x, attn(x)))
    return sub("norm2", g.op("Add", h, sub("ffn", h)))


@converter("transformer_encoder")
def transformer_encoder(g, layer, x, prefix):
    return convert(g, layer.blocks, x, prefix + "blocks.")  # a Sequential of encoder blocks
