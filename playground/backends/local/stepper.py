"""The running batch: rows enter (prefilled) and leave (sliced out) between decode steps.

The KV cache is one transformers DynamicCache over every row, left-padded: each row's real tokens
are the last columns of its line, so every row's next token lands in the same column and one
forward serves them all. A 2-D attention mask marks the padding, and each row carries its own
position ids (RoPE sees the row's real positions, whatever padding sits before them):

    cache keys/values per layer: (rows, kv_heads, columns, head_dim)
    mask:                        (rows, columns), 1 where the column holds a real token of that row

A row that joins is prefilled alone (with the other rows joining at that step) into a cache of its
own, which is then padded to the batch's width (or the batch to its) and concatenated along the
rows. A row that leaves is sliced out, and the columns that only padding now fills are dropped,
so the batch is as wide as its longest row, never wider.
"""

from __future__ import annotations

from playground.backends.local.rows import Row


class UnsupportedCache(RuntimeError):
    """The model's cache has layers (sliding window, linear attention) that cannot be padded and merged."""


def _check_layers(cache) -> None:
    from transformers.cache_utils import DynamicLayer

    odd = {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
    if odd:
        raise UnsupportedCache(f"this model's KV cache has {', '.join(sorted(odd))} layers, which the step "
                               "scheduler cannot merge across rows: use a model with full attention in every layer")


def _left_pad(t, width: int, dim: int):
    """`t` padded with zeros on the left of dimension `dim` up to `width`."""
    import torch.nn.functional as F

    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [missing, 0]
    return F.pad(t, pad)


class DecodeBatch:
    """Rows decoding together on one model, and their shared cache."""

    def __init__(self, model):
        self.model = model
        self.device = model.get_input_embeddings().weight.device
        self.rows: list[Row] = []
        self.cache = None
        self.mask = None  # (rows, columns) long, on the input device

    @property
    def width(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def forward_prompts(self, rows: list[Row], pad_id: int):
        """Run the prompts of `rows` (left-padded together) into a cache of their own: (cache, mask, the
        logits of each one's first token (len(rows), vocab) float32). `merge` then adds them to the batch."""
        import torch
        from transformers import DynamicCache

        width = max(len(r.input_ids) for r in rows)
        ids = [[pad_id] * (width - len(r.input_ids)) + r.input_ids for r in rows]
        mask = torch.tensor([[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in rows],
                            device=self.device)
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate numbers padded rows
        cache = DynamicCache(config=self.model.config)
        _check_layers(cache)
        with torch.no_grad():  # see step()
            out = self.model(input_ids=torch.tensor(ids, device=self.device), attention_mask=mask,
                             position_ids=position_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return cache, mask, out.logits[:, -1, :].float()

    def step(self):
        """One decode step over every row, each fed its last token: the logits (rows, vocab), float32."""
        import torch

        ids = torch.tensor([[r.last] for r in self.rows], device=self.device)  # (rows, 1)
        position_ids = torch.tensor([[r.position] for r in self.rows], device=self.device)
        mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        # Without no_grad (generate() has its own; a bare forward has none) every step's activations stay
        # alive for a backward pass that never comes, chained through the cache: a 1,500-token lane held
        # 22 GB of the embedded 135M model's activations on the CPU, and a GPU's memory runs out the same way.
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=self.cache,
                             use_cache=True, logits_to_keep=1)
        self.mask = mask
        for r in self.rows:
            r.position += 1
        return out.logits[:, -1, :].float()

    def merge(self, rows: list[Row], cache, mask) -> None:
        """Add prefilled rows to the batch: the narrower of the two caches is left-padded to the other."""
        import torch

        if self.cache is None:
            self.rows, self.cache, self.mask = list(rows), cache, mask
            return
        width = max(self.width, int(mask.shape[1]))
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)], dim=0)
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)], dim=0)
        self.rows += rows

    def keep(self, rows: list[Row]) -> None:
        """Keep only `rows` (a subset, in batch order): the others' cache is freed at once."""
        import torch

        if len(rows) == len(self.rows):
            return
        if not rows:
            self.clear()
            return
        wanted = set(rows)
        index = [i for i, r in enumerate(self.rows) if r in wanted]
        sel = torch.tensor(index, device=self.device)
        mask = self.mask.index_select(0, sel)
        # Columns that are padding in every remaining row hold nothing: drop them.
        start = int((mask.sum(0) == 0).long().cumprod(0).sum())
        self.mask = mask[:, start:]
        for layer in self.cache.layers:
            layer_sel = sel.to(layer.keys.device)
            layer.keys = layer.keys.index_select(0, layer_sel)[:, :, start:]
            layer.values = layer.values.index_select(0, layer_sel)[:, :, start:]
        self.rows = [self.rows[i] for i in index]

    def clear(self) -> None:
        self.rows, self.cache, self.mask = [], None, None
