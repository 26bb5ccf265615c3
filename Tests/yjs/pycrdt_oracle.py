"""pycrdt oracle for the TandemYjs interop tests (Tests/TandemYjsTests/PycrdtInteropTests.swift).

Speaks JSON lines on stdin/stdout: one request object per line, one response object per line.
Bytes travel as hex. Every request has "op"; a failure answers {"error": "..."}.

  scenario    {seed, clients, steps} -> {updates: [hex], full: hex, content: str}
              pycrdt documents edited concurrently by several clients, synced in random orders;
              `updates` are every update a local transaction produced plus the sync diffs
              exchanged, `full` one document's whole state once all are synced.
  content     {updates: [hex]} -> {content}            a fresh doc after applying them in order
  build       {updates: [hex]} -> {handle, state: hex} a doc kept under `handle`, its state vector
  apply       {handle, updates: [hex]} -> {content}    apply more to a kept doc, then drop it
  sv_many     {updates: [hex]} -> {states: [hex]}      yrs's encode_state_vector_from_update_v1
  messages    {seed} -> {messages: [hex]}              y-protocols messages pycrdt writes
"""

import json
import random
import sys

from pycrdt import (
    Array,
    Awareness,
    Doc,
    Map,
    Text,
    XmlElement,
    XmlFragment,
    XmlText,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    get_state,
    handle_sync_message,
)

ROOTS = {"text": Text, "array": Array, "map": Map, "xml": XmlFragment}

WORDS = ["a", "b", "hello", " ", "Ünïcødé", "日本語", "😀", "👩‍👩‍👧", "x😀y", "\n", "𝔘"]
ATTRS = [
    {"bold": True},
    {"italic": True},
    {"bold": None},
    {"color": "#ff0000"},
    {"link": {"href": "https://example.com", "n": 1}},
    {"size": 1.5},
    {"italic": None, "bold": True},
]


def make_doc(client_id):
    doc = Doc(client_id=client_id)
    for name, kind in ROOTS.items():
        doc[name] = kind()
    return doc


def scalar(rng):
    choice = rng.randrange(9)
    if choice == 0:
        return rng.randrange(-1000, 1000)
    if choice == 1:
        return rng.random() * 1e6
    if choice == 2:
        return rng.choice(WORDS)
    if choice == 3:
        return rng.choice([True, False])
    if choice == 4:
        return None
    if choice == 5:
        return {"k": rng.randrange(10), "nested": [1, "two", None, {"deep": [True]}]}
    if choice == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(5)))
    if choice == 7:
        return 2 ** rng.randrange(30, 53)
    return [rng.random(), -0.5, "s"]


def shared_types(value, found):
    """Every shared type reachable from `value`, depth first."""
    found.append(value)
    if isinstance(value, Array):
        for child in value:
            if isinstance(child, (Array, Map, Text)):
                shared_types(child, found)
    elif isinstance(value, Map):
        for child in value.values():
            if isinstance(child, (Array, Map, Text)):
                shared_types(child, found)
    return found


def new_value(rng, depth):
    choice = rng.randrange(10)
    if depth < 3 and choice == 0:
        return Text(rng.choice(WORDS))
    if depth < 3 and choice == 1:
        return Array([scalar(rng) for _ in range(rng.randrange(3))])
    if depth < 3 and choice == 2:
        return Map({"a": scalar(rng)})
    return scalar(rng)


def boundaries(text):
    """pycrdt indexes text in UTF-8 bytes: the offsets that fall between characters."""
    offsets = [0]
    for insert, _ in text.diff():
        if isinstance(insert, str):
            for character in insert:
                offsets.append(offsets[-1] + len(character.encode("utf-8")))
        else:
            offsets.append(offsets[-1] + 1)  # an embed
    return offsets


def edit_text(rng, text):
    offsets = boundaries(text)
    choice = rng.randrange(5)
    if choice in (0, 1) and len(offsets) > 1:
        first = rng.randrange(len(offsets) - 1)
        start = offsets[first]
        stop = offsets[min(len(offsets) - 1, first + rng.randrange(1, 6))]
        if choice == 0:
            del text[start:stop]
        else:
            text.format(start, stop, rng.choice(ATTRS))
    elif choice == 2:
        embed = rng.choice([{"image": "x.png"}, {"formula": "e=mc^2", "n": 2}, 42, [1, "two"]])
        attrs = rng.choice([None, {"bold": True}])
        text.insert_embed(rng.choice(offsets), embed, attrs)
    else:
        attrs = rng.choice([None, None] + ATTRS[:2])
        text.insert(rng.choice(offsets), rng.choice(WORDS), attrs)


def edit_array(rng, array, depth):
    length = len(array)
    if length > 0 and rng.random() < 0.3:
        start = rng.randrange(length)
        del array[start : min(length, start + rng.randrange(1, 4))]
    else:
        array.insert(rng.randrange(length + 1), new_value(rng, depth))


def edit_map(rng, map_, depth):
    keys = list(map_.keys())
    if keys and rng.random() < 0.25:
        del map_[rng.choice(keys)]
    elif rng.random() < 0.05:
        map_[rng.choice(["sub", "doc"])] = Doc()
    else:
        map_[rng.choice(["a", "b", "c", "ключ", "😀"])] = new_value(rng, depth)


def edit_xml(rng, fragment):
    children = list(fragment.children)
    if children and rng.random() < 0.3:
        del fragment.children[rng.randrange(len(children))]
        return
    if children and rng.random() < 0.4:
        child = rng.choice(children)
        if isinstance(child, XmlElement):
            child.attributes[rng.choice(["class", "id"])] = rng.choice(["x", "y"])
            return
        if isinstance(child, XmlText):
            child.insert(0, rng.choice(WORDS))  # offset 0 is a boundary in any encoding
            return
    if rng.random() < 0.5:
        fragment.children.insert(rng.randrange(len(children) + 1), XmlElement(rng.choice(["p", "h1", "li"]), {"a": "1"}))
    else:
        fragment.children.insert(rng.randrange(len(children) + 1), XmlText(rng.choice(WORDS)))


def edit(rng, doc):
    root = rng.choice(list(ROOTS))
    if root == "xml":
        edit_xml(rng, doc.get("xml", type=XmlFragment))
        return
    found = shared_types(doc.get(root, type=ROOTS[root]), [])
    target = rng.choice(found)
    depth = 1 if target is found[0] else 2
    if isinstance(target, Text):
        edit_text(rng, target)
    elif isinstance(target, Array):
        edit_array(rng, target, depth)
    else:
        edit_map(rng, target, depth)


def scenario(seed, clients, steps):
    rng = random.Random(seed)
    ids = set()
    while len(ids) < clients:
        # Yjs picks 32-bit client ids, yrs 53-bit ones: have both.
        ids.add(rng.randrange(1, 2**32) if rng.random() < 0.5 else rng.randrange(1, 2**53))
    docs = [make_doc(client_id) for client_id in sorted(ids)]
    updates = []
    syncing = [False]

    def record(event):
        if not syncing[0]:
            updates.append(event.update)

    subscriptions = [doc.observe(record) for doc in docs]
    for _ in range(steps):
        if rng.random() < 0.15 and len(docs) > 1:
            source, target = rng.sample(docs, 2)
            diff = source.get_update(target.get_state())
            syncing[0] = True
            target.apply_update(diff)
            syncing[0] = False
            updates.append(diff)
            continue
        doc = rng.choice(docs)
        if rng.random() < 0.2:
            with doc.transaction():
                for _ in range(rng.randrange(2, 5)):
                    edit(rng, doc)
        else:
            edit(rng, doc)
    for doc, subscription in zip(docs, subscriptions):
        doc.unobserve(subscription)
    # Sync everyone with the first document.
    first = docs[0]
    for doc in docs[1:]:
        first.apply_update(doc.get_update(first.get_state()))
    return {"updates": [u.hex() for u in updates], "full": first.get_update().hex(), "content": content_of(first)}


def delta(text):
    """A text's diff with adjacent runs of equal attributes joined (yrs may split them)."""
    runs = []
    for insert, attrs in text.diff():
        attrs = canonical(attrs or {})
        if runs and isinstance(insert, str) and isinstance(runs[-1][0], str) and runs[-1][1] == attrs:
            runs[-1][0] += insert
        else:
            runs.append([insert if isinstance(insert, str) else canonical(insert), attrs])
    return runs


def canonical(value):
    if isinstance(value, Text):
        return {"$text": delta(value)}
    if isinstance(value, Array):
        return [canonical(v) for v in value]
    if isinstance(value, Map):
        return {"$map": {k: canonical(v) for k, v in sorted(value.items())}}
    if isinstance(value, Doc):
        return {"$doc": str(value.guid)}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": value.hex()}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def canonical_xml(node):
    # Attributes sorted: str() of an element lists them in hash-map order.
    if isinstance(node, XmlElement):
        attributes = {key: canonical(value) for key, value in sorted(node.attributes)}
        return {"$element": node.tag, "attributes": attributes, "children": [canonical_xml(c) for c in node.children]}
    if isinstance(node, XmlText):
        return {"$xmltext": delta(node)}
    return [canonical_xml(child) for child in node.children]


def content_of(doc):
    return json.dumps(
        {
            name: (canonical_xml if kind is XmlFragment else canonical)(doc.get(name, type=kind))
            for name, kind in ROOTS.items()
        },
        sort_keys=True,
        ensure_ascii=False,
    )


def doc_from(updates):
    doc = make_doc(1)
    for update in updates:
        doc.apply_update(bytes.fromhex(update))
    return doc


def messages(seed):
    rng = random.Random(seed)
    doc = make_doc(rng.randrange(1, 2**32))
    edit(rng, doc)
    out = [create_sync_message(doc), create_update_message(doc.get_update())]
    other = make_doc(rng.randrange(1, 2**32))
    # handle_sync_message takes the message after its message type byte.
    reply = handle_sync_message(create_sync_message(other)[1:], doc)
    if reply is not None:
        out.append(reply)
    awareness = Awareness(doc)
    awareness.set_local_state({"user": {"name": rng.choice(WORDS), "color": "#abc"}, "cursor": [rng.randrange(99), None]})
    out.append(create_awareness_message(awareness.encode_awareness_update([doc.client_id])))
    awareness.set_local_state(None)
    out.append(create_awareness_message(awareness.encode_awareness_update([doc.client_id])))
    return [m.hex() for m in out]


def main():
    kept = {}
    next_handle = [0]
    for line in sys.stdin:
        request = json.loads(line)
        try:
            op = request["op"]
            if op == "scenario":
                response = scenario(request["seed"], request["clients"], request["steps"])
            elif op == "content":
                response = {"content": content_of(doc_from(request["updates"]))}
            elif op == "build":
                doc = doc_from(request["updates"])
                next_handle[0] += 1
                kept[next_handle[0]] = doc
                response = {"handle": next_handle[0], "state": doc.get_state().hex()}
            elif op == "apply":
                doc = kept.pop(request["handle"])
                for update in request["updates"]:
                    doc.apply_update(bytes.fromhex(update))
                response = {"content": content_of(doc)}
            elif op == "sv_many":
                response = {"states": [get_state(bytes.fromhex(u)).hex() for u in request["updates"]]}
            elif op == "messages":
                response = {"messages": messages(request["seed"])}
            else:
                response = {"error": f"unknown op {op!r}"}
        except (Exception, BaseException) as error:  # pycrdt panics are BaseExceptions; the Swift side fails on it
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            response = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
