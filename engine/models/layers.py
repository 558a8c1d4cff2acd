"""Small building blocks shared by the transformers: RMSNorm, SwiGLU, attention via SDPA."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


class SwiGLU(nn.Module):
    """Llama's feed-forward: w2(silu(w1 x) * w3 x), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Attention(nn.Module):
    """Multi-head attention (self when context is None, else cross), QK-RMSNorm, no biases."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        # Normalising q and k keeps attention logits bounded, so small models train at high lr.
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)

    def project(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of x, keys and values of the context (x itself when None): (B, H, N or M, d/H),
        q and k normalised."""
        b, n, _ = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, d/H)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, M, d/H)
        return self.q_norm(q), self.k_norm(k), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, H, N, d/H) queries over (B, H, M, d/H) keys, read where mask (B, M) -> (B, N, D)."""
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, M) True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, N, d/H)
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        extra: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_mask: torch.Tensor | None = None,
        extra_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention (context None) or cross-attention. extra: keys and values (B, H, M, d/H)
        of tokens appended to self-attention's own (conditions in the sequence), read where
        extra_mask (B, M) is True, with extra_bias (H, N, M) added to their logits."""
        q, k, v = self.project(x, context)
        if extra is None:
            return self.attend(q, k, v, mask)
        b, n = x.shape[:2]
        k, v = torch.cat([k, extra[0]], 2), torch.cat([v, extra[1]], 2)  # (B, H, N+M, d/H)
        if extra_bias is None:
            if extra_mask is not None:
                mask = torch.cat([extra_mask.new_ones(b, n) if mask is None else mask, extra_mask], 1)
            return self.attend(q, k, v, mask)
        bias = extra_bias.to(q.dtype)[None].expand(b, -1, -1, -1)  # (B, H, N, M)
        if extra_mask is not None:
            bias = bias.masked_fill(~extra_mask[:, None, None, :], float("-inf"))
        own = q.new_zeros(b, self.heads, n, n)
        logits_bias = torch.cat([own, bias], 3)  # (B, H, N, N+M), added to the logits
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=logits_bias)  # (B, H, N, d/H)
        return self.out(y.transpose(1, 2).flatten(2))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block for text: self-attention + SwiGLU."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, heads)
        self.ffn = SwiGLU(dim, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.ffn(self.norm2(x))
