"""The OpenAI wire format: request bodies out, `Completion`s in. Pure functions, no I/O.

Two APIs are spoken:

- ``completions`` (``POST {base}/completions``): raw text in, raw text out; ``logprobs=k`` returns
  ``{"tokens": [...], "top_logprobs": [{token: logprob, ...}, ...]}`` per choice.
- ``chat`` (``POST {base}/chat/completions``): the prompt becomes one user message, for servers or
  models that only offer chat; ``logprobs: true, top_logprobs: k`` returns
  ``{"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]}``.

Servers differ in the details (llama-cpp-python's server adds the sampled token to the top-k dict, so it
may hold k+1 entries; tokens that decode to the same string collapse into one dict key), so candidates are
sorted here, most likely first, and cut to k. llama.cpp's C++ ``llama-server`` answers ``completions``
with the chat shape (``{"content": [...]}``, one entry per token with its own ``top_logprobs`` list) and
no ``tokens`` key; that is read as chat logprobs.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

from .base import Completion, SamplingParams

Api = Literal["completions", "chat"]

API_PATHS: dict[str, str] = {"completions": "/completions", "chat": "/chat/completions"}


class MalformedResponse(ValueError):
    """A 200 response whose body is not the shape the API promises (retryable: proxies mangle)."""


def build_payload(
    api: Api, model: str, prompt: str, params: SamplingParams, n: int, seed: int | None
) -> dict[str, Any]:
    """The JSON body asking for `n` completions of `prompt`."""
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": n,
    }
    if api == "chat":
        payload["messages"] = [{"role": "user", "content": prompt}]
    else:
        payload["prompt"] = prompt
    if params.stop:
        payload["stop"] = list(params.stop)
    if seed is not None:
        payload["seed"] = seed
    if params.top_logprobs:
        if api == "chat":
            payload["logprobs"] = True
            payload["top_logprobs"] = params.top_logprobs
        else:
            payload["logprobs"] = params.top_logprobs
    return payload


def _top_k(candidates: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    ranked = sorted(((str(t), float(lp)) for t, lp in candidates), key=lambda c: c[1], reverse=True)
    return ranked[:k]


def _completion_logprobs(
    logprobs: Mapping[str, Any] | None, k: int
) -> tuple[list[str] | None, list[list[tuple[str, float]]] | None]:
    if logprobs and logprobs.get("tokens") is None and logprobs.get("content") is not None:
        return _chat_logprobs(logprobs, k)  # llama-server's completions
    if not logprobs or logprobs.get("tokens") is None:
        return None, None
    tokens = [str(t) for t in logprobs["tokens"]]
    per_position = logprobs.get("top_logprobs") or [None] * len(tokens)
    if len(per_position) != len(tokens):
        raise MalformedResponse("logprobs.top_logprobs and logprobs.tokens differ in length")
    top = [_top_k(list(d.items()), k) if d else [] for d in per_position]
    return tokens, top


def _chat_logprobs(
    logprobs: Mapping[str, Any] | None, k: int
) -> tuple[list[str] | None, list[list[tuple[str, float]]] | None]:
    content = (logprobs or {}).get("content")
    if content is None:
        return None, None
    tokens = [str(entry["token"]) for entry in content]
    top = [
        _top_k([(c["token"], c["logprob"]) for c in entry.get("top_logprobs") or []], k)
        for entry in content
    ]
    return tokens, top


def _token_counts(
    usage: Mapping[str, Any], texts: Sequence[str], tokens: Sequence[list[str] | None]
) -> list[int]:
    """Generated tokens per choice.

    Exact when the server returned tokens or there is a single choice; otherwise `usage` only has the
    total over all choices, which is split in proportion to text length (an estimate, used for
    throughput display only).
    """
    total = int(usage.get("completion_tokens") or 0)
    if all(t is not None for t in tokens):
        return [len(t) for t in tokens]  # type: ignore[arg-type]
    if len(texts) == 1:
        return [total]
    chars = sum(len(t) for t in texts) or 1
    return [round(total * len(t) / chars) for t in texts]


def parse_choices(api: Api, body: Any, params: SamplingParams) -> list[Completion]:
    """The completions in a response body, ordered by choice index.

    Raises MalformedResponse when the body lacks the fields every OpenAI-compatible server returns.
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("choices"), list):
        raise MalformedResponse("response has no 'choices' list")
    usage = body.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    k = params.top_logprobs
    texts: list[str] = []
    finish: list[str] = []
    tokens: list[list[str] | None] = []
    tops: list[list[list[tuple[str, float]]] | None] = []
    try:
        choices = sorted(body["choices"], key=lambda c: int(c.get("index", 0)))
        for choice in choices:
            if api == "chat":
                texts.append(choice["message"].get("content") or "")
                toks, top = _chat_logprobs(choice.get("logprobs"), k) if k else (None, None)
            else:
                texts.append(str(choice["text"]))
                toks, top = _completion_logprobs(choice.get("logprobs"), k) if k else (None, None)
            finish.append(str(choice.get("finish_reason") or "stop"))
            tokens.append(toks)
            tops.append(top)
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise MalformedResponse(f"malformed choice ({type(err).__name__}: {err})") from None
    counts = _token_counts(usage, texts, tokens)
    return [
        Completion(
            text=texts[i],
            finish_reason=finish[i],
            prompt_tokens=prompt_tokens,
            completion_tokens=counts[i],
            tokens=tokens[i],
            top_logprobs=tops[i],
        )
        for i in range(len(texts))
    ]


def first_model_id(body: Any) -> str:
    """The first model a ``GET {base}/models`` body lists."""
    try:
        return str(body["data"][0]["id"])
    except (KeyError, IndexError, TypeError) as err:
        raise MalformedResponse(f"model list has no model id ({type(err).__name__})") from None
