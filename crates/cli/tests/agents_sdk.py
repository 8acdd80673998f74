"""The official `anthropic` and `openai` SDKs against one base URL of a real mlx-box (crates/cli/tests/agents_sdk.rs).

    agents_sdk.py PHASE PORT KEY CHAT_MODEL TOOL_MODEL [ARGS…]

Prints one JSON object: what each call returned (or the error it raised: class, status, body), for the Rust
test to check. Every client has max_retries=0 and a timeout, so a phase is bounded in time.
"""
import json
import sys

import anthropic
import openai

PHASE, PORT, KEY, CHAT, TOOL = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
REST = sys.argv[6:]
BASE = f"http://127.0.0.1:{PORT}"
A = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)
O = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=120)
PROMPT = [{"role": "user", "content": "What is 2+2?"}]
WEATHER = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FN = {"type": "function", "name": "weather", "description": WEATHER["description"],
      "parameters": WEATHER["input_schema"]}


def refused(f):
    """What a call that must fail raised: its class, HTTP status and body."""
    try:
        f()
    except (anthropic.APIStatusError, openai.APIStatusError) as e:
        return {"class": type(e).__name__, "status": e.status_code, "body": e.body}
    return {"class": None}


def anthropic_stream(**kw):
    with A.messages.stream(**kw) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    return {"events": events, "final": final.model_dump()}


def responses_stream(**kw):
    events, final = [], None
    for e in O.responses.create(stream=True, **kw):
        events.append(e.type)
        if e.type in ("response.completed", "response.incomplete"):
            final = e.response.model_dump()
    return {"events": events, "final": final}


def text():
    out = {}
    # Anthropic Messages: text, thinking off and on, streamed and not.
    off = dict(model=CHAT, max_tokens=48, messages=PROMPT, thinking={"type": "disabled"})
    on = dict(model=CHAT, max_tokens=200, messages=PROMPT, thinking={"type": "enabled", "budget_tokens": 1024})
    out["a_text"] = A.messages.create(**off).model_dump()
    out["a_think"] = A.messages.create(**on).model_dump()
    out["a_stream"] = anthropic_stream(**off)
    out["a_stream_think"] = anthropic_stream(**on)
    # Refusals in Anthropic's shape.
    out["a_bad_key"] = refused(lambda: A.with_options(api_key="sk-wrong").messages.create(**off))
    out["a_other_model"] = refused(lambda: A.messages.create(**dict(off, model="someone-elses-model")))
    # OpenAI Responses: the same.
    off = dict(model=CHAT, input="What is 2+2?", max_output_tokens=48, reasoning={"effort": "none"})
    on = dict(model=CHAT, input="What is 2+2?", max_output_tokens=200, reasoning={"effort": "low"})
    out["o_text"] = O.responses.create(store=False, **off).model_dump()
    out["o_think"] = O.responses.create(store=False, **on).model_dump()
    out["o_stream"] = responses_stream(store=False, **off)
    out["o_stream_think"] = responses_stream(store=False, **on)
    out["o_bad_key"] = refused(lambda: O.with_options(api_key="sk-wrong").responses.create(**off))
    out["o_other_model"] = refused(lambda: O.responses.create(**dict(off, model="someone-elses-model")))
    return out


def tools():
    out = {}
    # A tool the stand-in backend calls, and its result sent back.
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    call = A.messages.create(model=TOOL, max_tokens=64, messages=ask, tools=[WEATHER])
    out["a_tool"] = call.model_dump()
    use = [b for b in call.content if b.type == "tool_use"][0]
    back = ask + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in call.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}]},
    ]
    out["a_tool_result"] = A.messages.create(model=TOOL, max_tokens=64, messages=back, tools=[WEATHER]).model_dump()
    out["a_tool_stream"] = anthropic_stream(model=TOOL, max_tokens=64, messages=ask, tools=[WEATHER])
    call = O.responses.create(model=TOOL, input="Weather in Paris?", tools=[FN], store=False)
    out["o_tool"] = call.model_dump()
    fc = [i for i in call.output if i.type == "function_call"][0]
    back = [{"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
            {"type": "function_call_output", "call_id": fc.call_id, "output": "18C and sunny"}]
    out["o_tool_result"] = O.responses.create(model=TOOL, input=back, tools=[FN], store=False).model_dump()
    out["o_tool_stream"] = responses_stream(model=TOOL, input="Weather in Paris?", tools=[FN], store=False)
    return out


def count():
    """count_tokens against the server's own prompt_tokens for the same request (a 1-token completion)."""
    out = {}
    for name, kw in {
        "plain": dict(messages=PROMPT),
        "system": dict(system="Be brief.", messages=PROMPT + [
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]),
        "nothink": dict(messages=PROMPT, thinking={"type": "disabled"}),
    }.items():
        counted = A.messages.count_tokens(model=CHAT, **kw).input_tokens
        u = A.messages.create(model=CHAT, max_tokens=1, **kw).usage
        # Anthropic's input_tokens leaves out what the server's prompt cache read: the whole prompt is both.
        served = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
        out[name] = [counted, served]
    out["bad_key"] = refused(lambda: A.with_options(api_key="sk-wrong").messages.count_tokens(
        model=CHAT, messages=PROMPT))
    return out


def store_before():
    """Responses kept by the daemon: a chain by previous_response_id, one deleted, one kept for after a
    restart; another key sees none of them."""
    kw = dict(model=CHAT, max_output_tokens=16, reasoning={"effort": "none"})
    first = O.responses.create(input="My name is Ada.", **kw)
    second = O.responses.create(input="What is my name?", previous_response_id=first.id, **kw)
    got = O.responses.retrieve(second.id)
    gone = O.responses.create(input="Forget me.", **kw)
    deleted = O.responses.delete(gone.id)
    other = openai.OpenAI(base_url=f"{BASE}/v1", api_key=REST[0], max_retries=0, timeout=120)
    return {
        "first": first.model_dump(), "second": second.model_dump(), "got": got.model_dump(),
        "deleted": deleted.model_dump() if deleted is not None else None,
        "gone": refused(lambda: O.responses.retrieve(gone.id)),
        "gone_prev": refused(lambda: O.responses.create(input="x", previous_response_id=gone.id, **kw)),
        "missing": refused(lambda: O.responses.retrieve("resp_0123456789abcdef01234567")),
        "other_key": refused(lambda: other.responses.retrieve(second.id)),
        "other_key_prev": refused(lambda: other.responses.create(
            input="x", previous_response_id=second.id, **dict(kw, model=CHAT))),
        "unstored": O.responses.create(input="Not kept.", store=False, **kw).id,
        # The input items of the second response: the first's conversation, then its own input.
        "items": [i.model_dump() for i in O.responses.input_items.list(second.id, order="asc")],
        "items_page": O.responses.input_items.list(second.id, limit=1).model_dump(),
        "items_other_key": refused(lambda: other.responses.input_items.list(second.id)),
    }


def store_after():
    """After the daemon restarted: the kept response is still there, and continues."""
    kept, unstored = REST[0], REST[1]
    kw = dict(model=CHAT, max_output_tokens=16, reasoning={"effort": "none"})
    got = O.responses.retrieve(kept)
    third = O.responses.create(input="And again?", previous_response_id=kept, **kw)
    return {
        "got": got.model_dump(), "third": third.model_dump(),
        "unstored": refused(lambda: O.responses.retrieve(unstored)),
    }


print(json.dumps({"text": text, "tools": tools, "count": count, "store_before": store_before,
                  "store_after": store_after}[PHASE](), default=str))
