"""Sentinel values shared across packages, each defined once here.

Every one of them is written into arrays that cross package boundaries (a store blob read by the
aligner, aligned targets read by the collator, a collated batch read by the loss), so each must have a
single definition that producer and consumer both import.
"""

from __future__ import annotations

PAD_ID = -1
"""Token-id slot that holds no token: padding of a top-k candidate row shorter than k.

Used in the sample store's blobs (`cotspec.store.blob`), in aligned targets (`cotspec.align`) and in the
collated ``cand_ids``. -1 because no tokenizer gives out a negative id, it fits the int32 arrays every
one of those is stored in, and ``ids >= 0`` is then the test for a real candidate. The log-prob next to
it is always -inf.
"""

IGNORE_INDEX = -100
"""Label value the loss excludes: prompt, padding and other positions with nothing to learn.

-100 is the default ``ignore_index`` of `torch.nn.functional.cross_entropy` and what Hugging Face models
and collators write into ``labels``, so batches built here also mean the same thing to transformers.
"""
