r"""Loop-based transcriptions of the transformer pieces VISTA and MyGO are built from (for
test/nn/models/test_vista.py and test_mygo.py): layer norm, multi-head self-attention with a
key padding mask, the post-norm encoder layer, InfoNCE. Eval mode only (no dropout)."""
import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor


def layer_norm(x: Tensor, norm: torch.nn.LayerNorm) -> Tensor:
    D = x.numel()
    mean = sum(float(x[i]) for i in range(D)) / D
    var = sum((float(x[i]) - mean) ** 2 for i in range(D)) / D
    return torch.stack([(x[i] - mean) / math.sqrt(var + norm.eps) * norm.weight[i]
                        + norm.bias[i] for i in range(D)])


def self_attention(seq: List[Tensor], present: Sequence[bool],
                   attn: torch.nn.MultiheadAttention) -> List[Tensor]:
    D, H = attn.embed_dim, attn.num_heads
    hd = D // H
    W, b = attn.in_proj_weight, attn.in_proj_bias
    q = [W[:D] @ x + b[:D] for x in seq]
    k = [W[D:2 * D] @ x + b[D:2 * D] for x in seq]
    v = [W[2 * D:] @ x + b[2 * D:] for x in seq]
    out = []
    for i in range(len(seq)):
        heads = []
        for h in range(H):
            sl = slice(h * hd, (h + 1) * hd)
            logits = {j: float((q[i][sl] * k[j][sl]).sum()) / math.sqrt(hd)
                      for j in range(len(seq)) if present[j]}
            top = max(logits.values())
            z = sum(math.exp(a - top) for a in logits.values())
            heads.append(sum(math.exp(a - top) / z * v[j][sl] for j, a in logits.items()))
        o = torch.cat(heads)
        out.append(attn.out_proj.weight @ o + attn.out_proj.bias)
    return out


def encoder_layer(seq: List[Tensor], present: Sequence[bool],
                  layer: torch.nn.TransformerEncoderLayer) -> List[Tensor]:
    r"""Post-norm: :math:`x = \mathrm{LN}_1(x + \mathrm{SA}(x))`,
    :math:`x = \mathrm{LN}_2(x + W_2 \mathrm{relu}(W_1 x + b_1) + b_2)`."""
    sa = self_attention(seq, present, layer.self_attn)
    x = [layer_norm(seq[i] + sa[i], layer.norm1) for i in range(len(seq))]
    out = []
    for xi in x:
        ff = layer.linear2.weight @ torch.relu(layer.linear1.weight @ xi + layer.linear1.bias) \
            + layer.linear2.bias
        out.append(layer_norm(xi + ff, layer.norm2))
    return out


def encoder(seq: List[Tensor], present: Optional[Sequence[bool]],
            enc: torch.nn.TransformerEncoder) -> List[Tensor]:
    present = [True] * len(seq) if present is None else list(present)
    for layer in enc.layers:
        seq = encoder_layer(seq, present, layer)
    return seq


def cosine(a: Tensor, b: Tensor) -> float:
    return float((a * b).sum()) / max(float(a.norm()) * float(b.norm()), 1e-8)


def info_nce(anchor: Sequence[Tensor], positive: Sequence[Tensor], tau: float) -> float:
    n = len(anchor)
    total = 0.0
    for i in range(n):
        logits = [cosine(anchor[i], positive[j]) / tau for j in range(n)]
        top = max(logits)
        total -= logits[i] - top - math.log(sum(math.exp(a - top) for a in logits))
    return total / n
