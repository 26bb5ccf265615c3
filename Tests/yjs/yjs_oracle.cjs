// Yjs oracle for the TandemYjs interop tests (Tests/TandemYjsTests/YjsInteropTests.swift).
//
// Runs the real Yjs, lib0 and y-protocols (Debian packages node-yjs, node-lib0, node-y-protocols,
// found through NODE_PATH=/usr/share/nodejs). JSON lines on stdin/stdout, bytes as hex; a failure
// answers {"error": "..."}.
//
//   merge          {updates: [hex]}       -> {update: hex}  Y.mergeUpdates
//   diff           {update: hex, sv: hex} -> {update: hex}  Y.diffUpdate
//   normalize      {updates: [hex]}       -> {updates: [hex]}  each as Yjs re-writes it: values
//                  through JavaScript (readAny/writeAny, JSON.parse/JSON.stringify), items read
//                  lazily (convertUpdateFormatV1ToV2 then V2ToV1); structs and clocks untouched
//   merge_many     {groups: [[hex]]}      -> {updates: [hex]}  Y.mergeUpdates of each group
//   sv_many        {updates: [hex]}       -> {states: [hex]}   Y.encodeStateVectorFromUpdate of each
//   scenario       {seed, clients, steps} -> {updates: [hex], full: hex}
//                  Yjs documents edited concurrently (what pycrdt cannot write: varInt numbers,
//                  ContentBinary), synced in random orders.
//   messages       {seed}                 -> {messages: [hex]}  y-protocols sync, awareness, auth
'use strict'

const readline = require('readline')
const Y = require('yjs')
const encoding = require('lib0/encoding')
const syncProtocol = require('y-protocols/sync')
const awarenessProtocol = require('y-protocols/awareness')
const authProtocol = require('y-protocols/auth')

const hex = (bytes) => Buffer.from(bytes).toString('hex')
const bytes = (text) => new Uint8Array(Buffer.from(text, 'hex'))

// A small seeded generator (mulberry32), so a seed names one scenario.
function generator (seed) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6D2B79F5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    random: next,
    below: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)]
  }
}

const WORDS = ['a', 'hello', ' ', 'Ünï', '日本', '😀', 'x😀y', '\n']

function scalar (rng) {
  switch (rng.below(8)) {
    case 0: return rng.below(2000) - 1000
    case 1: return rng.random() * 1e6
    case 2: return rng.pick(WORDS)
    case 3: return rng.random() < 0.5
    case 4: return null
    case 5: return { k: rng.below(10), list: [1, 'two', null, -0] }
    case 6: return 2 ** (30 + rng.below(23))
    default: return [rng.random(), 'x']
  }
}

// Offsets in a Y.Text (UTF-16 units, an embed counting one) that do not fall inside a surrogate
// pair: Yjs and yrs disagree on text cut there (Yjs writes U+FFFD), which is not what is tested here.
function boundaries (text) {
  const offsets = [0]
  let at = 0
  for (const op of text.toDelta()) {
    if (typeof op.insert === 'string') {
      for (const character of op.insert) {
        at += character.length
        offsets.push(at)
      }
    } else {
      at += 1
      offsets.push(at)
    }
  }
  return offsets
}

function edit (rng, doc) {
  const text = doc.getText('text')
  const array = doc.getArray('array')
  const map = doc.getMap('map')
  const xml = doc.getXmlFragment('xml')
  const choice = rng.below(9)
  switch (choice) {
    case 0: text.insert(rng.pick(boundaries(text)), rng.pick(WORDS), rng.random() < 0.3 ? { bold: true } : undefined); break
    case 1:
    case 2: {
      const offsets = boundaries(text)
      if (offsets.length < 2) break
      const first = rng.below(offsets.length - 1)
      const start = offsets[first]
      const length = offsets[Math.min(offsets.length - 1, first + 1 + rng.below(3))] - start
      if (choice === 1) text.format(start, length, { italic: rng.random() < 0.5 ? true : null })
      else text.delete(start, length)
      break
    }
    case 3: text.insertEmbed(rng.pick(boundaries(text)), { image: 'x.png' }); break
    case 4: array.insert(rng.below(array.length + 1), [scalar(rng), scalar(rng)]); break
    case 5: array.insert(rng.below(array.length + 1), [new Uint8Array([rng.below(256), 1, 2])]); break
    case 6: if (array.length > 0) { const start = rng.below(array.length); array.delete(start, Math.min(array.length - start, 1 + rng.below(3))) } break
    case 7: {
      const key = rng.pick(['a', 'b', 'c'])
      const choice = rng.below(4)
      if (choice === 0) {
        map.delete(key)
      } else if (choice === 1) {
        const nested = new Y.Map()
        nested.set('n', scalar(rng))
        map.set(key, nested)
      } else if (choice === 2) {
        map.set(key, new Y.Text('t'))
      } else {
        map.set(key, scalar(rng))
      }
      break
    }
    default: {
      // No Y.XmlHook: yrs reads its type ref without the hook name Yjs writes after it, so pycrdt
      // cannot decode a document holding one (UpdateCodecTests covers hooks).
      const choice = rng.below(2)
      const node = choice === 0 ? new Y.XmlElement('p') : new Y.XmlText('x')
      xml.insert(rng.below(xml.length + 1), [node])
      if (choice === 0) node.setAttribute('class', 'c')
    }
  }
}

function scenario (seed, clients, steps) {
  const rng = generator(seed)
  const docs = []
  for (let i = 0; i < clients; i++) {
    const doc = new Y.Doc()
    doc.clientID = 1 + rng.below(2 ** 31) + i
    docs.push(doc)
  }
  const updates = []
  let syncing = false
  docs.forEach(doc => doc.on('update', (update) => { if (!syncing) updates.push(update) }))
  for (let step = 0; step < steps; step++) {
    if (rng.random() < 0.15 && docs.length > 1) {
      const source = rng.pick(docs)
      const target = rng.pick(docs.filter(d => d !== source))
      const diff = Y.encodeStateAsUpdate(source, Y.encodeStateVector(target))
      syncing = true
      Y.applyUpdate(target, diff)
      syncing = false
      updates.push(diff)
      continue
    }
    const doc = rng.pick(docs)
    doc.transact(() => { for (let i = 0, n = rng.random() < 0.2 ? 3 : 1; i < n; i++) edit(rng, doc) })
  }
  const first = docs[0]
  for (const doc of docs.slice(1)) Y.applyUpdate(first, Y.encodeStateAsUpdate(doc, Y.encodeStateVector(first)))
  return { updates: updates.map(hex), full: hex(Y.encodeStateAsUpdate(first)) }
}

function messages (seed) {
  const rng = generator(seed)
  const doc = new Y.Doc()
  edit(rng, doc)
  const out = []
  let encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  syncProtocol.writeSyncStep1(encoder, doc)
  out.push(encoding.toUint8Array(encoder))
  encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  syncProtocol.writeSyncStep2(encoder, doc, Y.encodeStateVector(new Y.Doc()))
  out.push(encoding.toUint8Array(encoder))
  encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  syncProtocol.writeUpdate(encoder, Y.encodeStateAsUpdate(doc))
  out.push(encoding.toUint8Array(encoder))
  const awareness = new awarenessProtocol.Awareness(doc)
  awareness.setLocalState({ user: { name: rng.pick(WORDS) }, cursor: { anchor: rng.below(99), head: null } })
  for (const clients of [[doc.clientID], []]) {
    encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1)
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, clients))
    out.push(encoding.toUint8Array(encoder))
  }
  awareness.setLocalState(null)
  encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 1)
  encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID]))
  out.push(encoding.toUint8Array(encoder))
  awareness.destroy()
  encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 2)
  authProtocol.writePermissionDenied(encoder, 'read-only ' + rng.pick(WORDS))
  out.push(encoding.toUint8Array(encoder))
  encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 3) // query awareness: y-websocket writes the bare type
  out.push(encoding.toUint8Array(encoder))
  return out.map(hex)
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  let response
  try {
    const request = JSON.parse(line)
    switch (request.op) {
      case 'merge': response = { update: hex(Y.mergeUpdates(request.updates.map(bytes))) }; break
      case 'diff': response = { update: hex(Y.diffUpdate(bytes(request.update), bytes(request.sv))) }; break
      case 'normalize': response = { updates: request.updates.map(update => hex(Y.convertUpdateFormatV2ToV1(Y.convertUpdateFormatV1ToV2(bytes(update))))) }; break
      case 'merge_many': response = { updates: request.groups.map(group => hex(Y.mergeUpdates(group.map(bytes)))) }; break
      case 'sv_many': response = { states: request.updates.map(update => hex(Y.encodeStateVectorFromUpdate(bytes(update)))) }; break
      case 'scenario': response = scenario(request.seed, request.clients, request.steps); break
      case 'messages': response = { messages: messages(request.seed) }; break
      default: response = { error: 'unknown op ' + request.op }
    }
  } catch (error) {
    response = { error: String(error && error.stack ? error.stack : error) }
  }
  process.stdout.write(JSON.stringify(response) + '\n')
})
