import TandemRedis

/// Group commit: a whole batch of decided pushes in one atomic script call (see `PushPipeline`), and the
/// doc TTL every script of the doc shares.
///
/// Keys of doc D (all tagged `{D}`, one Cluster slot):
/// - `tandem:{D}:clock` — head clock (INCRBY).
/// - `tandem:{D}:records` — hash id → record JSON (canonical).
/// - `tandem:{D}:versions` — hash id → clock of the record's last change (live records).
/// - `tandem:{D}:tombs` — sorted set id → clock of removal (kept for --log-retention commits).
/// - `tandem:{D}:log` — stream. A batch of one writes the classic entry `CLOCK-0` with `ops`, `by`,
///   `node`, `id`, `at`; a larger batch writes ONE entry whose id is its LAST clock, with `n` (commits),
///   `node`, `at` and `b`, the JSON array `[{"by":SID,"id":ID,"ops":OPS},…]` in clock order. Ids stay
///   increasing clocks, so `XRANGE log FROM-0 + COUNT k` still starts with the entry holding FROM.
///   Trimmed by clock (`MINID ~ head − retention + 1`): at least `--log-retention` commits stay, and
///   never one the history sealer has not sealed (`MINID` at most `hsealed + 1`, docs/history.md).
/// - `tandem:{D}:hsealed`, `:hsegs`, `:hindex`, `:hckpts`, `:hversions` — the doc's history
///   (`HistoryScripts`), written by the sealer, never by a commit.
/// - `tandem:{D}:pushids` — hash, the idempotent re-push record, O(1) per push: per session SID
///   `SID` → pushes recorded, `SID:K` → push id in ring slot K (0…63), `SID=PUSHID` → its clock; and
///   `~tail` → `TOKEN@CLOCK`, the token of the batch that wrote the head and that head (what a batch
///   pipelined behind it checks, see `commit`; `~` is not base64url, so no session's field); `~sum` →
///   the doc's checksum, `CLOCK:HEX16` (stop 31: read by the commit's first HMGET and written by its
///   HSET of this hash, where it had a GET and a SET of `:sum` of its own; see below). A
///   re-push is one HMGET of `SID=PUSHID`; recording a push overwrites one slot and deletes the lookup
///   of the push id it evicts. (It replaces `:pushes`, whose per-session value of 64 lines was scanned
///   and rebuilt on every commit: O(64 × id length) and a stall with long ids.)
/// - `tandem:{D}:pushlast` — sorted set SID → clock of its last commit; sessions idle for
///   `--log-retention` commits are forgotten (every 64 clocks, a bounded number at a time).
/// - The doc's checksum (issue 13, `DocChecksum`) and the clock it describes, `CLOCK:HEX16`: `~sum` in
///   pushids since stop 31, before that `tandem:{D}:sum`. Each commit adds its delta; a value whose clock
///   is not the one before the commit (a node from before checksums committed since) is unknown, and is
///   not advanced (nodes seed it again, `SyncReadScripts.seedSum`). `tandem:{D}:sum` is still read — by a
///   commit when `~sum` is not the clock before it, by the read scripts when `~sum` is not the head's
///   (`SyncReadScripts.storedSum`) — but no longer written (except by a seed that replaces a wrong
///   checksum): in a rolling upgrade, nodes of stop 30 keep it, and each form then finds the other's
///   commits left its own place tagged with an older clock, i.e. unknown, never wrong (the commit goes
///   without sums and the node seeds; `GroupCommitStop31Tests`).
/// - `tandem:{D}:pushes`, `tandem:{D}:pushers` — the legacy record of the single-commit script (before
///   group commit). Still checked for re-pushes while it exists (a client re-pushing what an older
///   version committed) and pruned as it ages; nothing new is written there.
///
/// Session ids are server-made base64url, push ids serialized JSON: neither contains `:` `=` or a raw
/// newline, so the field names cannot collide.
///
/// Doc TTL (`--doc-ttl`, issue 7): every key of the doc carries one and the same deadline (set with one
/// PEXPIREAT each, from one reading of the time), so they vanish together and no script ever sees a
/// doc half expired. `keepAlive` moves it to now + TTL once the clock's TTL has run down by an hour (by
/// half the TTL when that is shorter). The load and head scripts (`SyncReadScripts`), which nodes run
/// while they hold the doc open (the head check every few seconds), run it — and only nodes holding a doc
/// open commit to it, so a doc in use never expires under a node's replica and commits need not look at
/// the deadline. A commit does what it does (inlined, over every key of `keySuffixes`) only for a new
/// doc (or one that lost its deadline); keys a batch creates get the clock's deadline at once. TTL 0 means never: the same calls drop a deadline an earlier
/// setting left.
enum GroupCommitScript {
    static func keys(_ doc: String) -> [String] {
        let p = "tandem:{\(doc)}:"
        return keySuffixes.map { p + String(decoding: $0, as: UTF8.self) }
    }

    /// What follows `tandem:{D}:` in each key of `keys(doc)`, in order.
    static let keySuffixes: [[UInt8]] = [
        "clock", "records", "versions", "tombs", "log", "pushids", "pushlast", "pushes", "pushers", "sum",
        // History (issue 15, `HistoryScripts`): in this list so the doc's deadline covers them too.
        "hsealed", "hsegs", "hindex", "hckpts", "hversions",
    ].map { Array($0.utf8) }

    /// Writes the keys of a group commit (`commit`) into its call, without making the key strings:
    /// `numkeys` and the doc's clock key alone (`all` false: a single Redis), or every key of `keys(doc)`
    /// (`all`: a Redis Cluster). The script makes the doc's keys from the clock's either way. A single
    /// Redis lets a script reach keys it did not name, and each named key cost it ~1,000 instructions
    /// per commit to parse and hand to Lua (stop 29). A Cluster needs them named: while the doc's slot
    /// migrates, Redis answers a call naming a key already moved with ASK or TRYAGAIN before the script
    /// runs, while a key reached unnamed fails the script halfway, after some of its writes.
    static func writeKeys(_ doc: String, all: Bool, into out: inout RedisCommandEncoder) {
        var doc = doc
        if all {
            out.write(keySuffixes.count)
            doc.withUTF8 { doc in
                for suffix in keySuffixes { writeDocKey(doc, suffix: suffix, into: &out) }
            }
        } else {
            out.write(1)
            doc.withUTF8 { writeDocKey($0, suffix: keySuffixes[0], into: &out) }
        }
    }

    /// The doc's clock key alone, `tandem:{D}:clock`, without `numkeys` (a commit round's keys).
    static func writeClockKey(_ doc: String, into out: inout RedisCommandEncoder) {
        var doc = doc
        doc.withUTF8 { writeDocKey($0, suffix: keySuffixes[0], into: &out) }
    }

    /// Every key of the commit as `writeKeys(all: true)` writes them (a Cluster's form), encoded once: a
    /// doc's every group commit has the same (the shard keeps them with the doc, `DocState.commitKeys`).
    static func encodedKeys(_ doc: String) -> RedisEncodedArguments {
        RedisEncodedArguments { writeKeys(doc, all: true, into: &$0) }
    }

    private static let tagOpen: [UInt8] = Array("tandem:{".utf8)

    /// `tandem:{D}` then, with a suffix, `:SUFFIX`.
    private static func writeDocKey(_ doc: UnsafeBufferPointer<UInt8>, suffix: [UInt8]?, into out: inout RedisCommandEncoder) {
        let length = tagOpen.count + doc.count + 1 + (suffix.map { 1 + $0.count } ?? 0)
        out.writeBulkString(length: length) { pointer in
            var p = pointer
            tagOpen.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
            p += tagOpen.count
            if doc.count > 0 { p.update(from: doc.baseAddress!, count: doc.count) }
            p += doc.count
            p[0] = UInt8(ascii: "}")
            p += 1
            guard let suffix else { return }
            p[0] = UInt8(ascii: ":")
            p += 1
            suffix.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
        }
    }

    /// Lua: `keepAlive(ttl, nowMs)` over KEYS (keys(doc)), see the type's comment. `nowMs` (optional) is
    /// the time the caller read already. Returns true when it set (or, for ttl 0, cleared) the deadline of
    /// every key, false when nothing was due (or the doc has no clock).
    static let keepAlive = """
        local function keepAlive(ttl, nowMs)
          local left = redis.call('PTTL', KEYS[1])
          if left == -2 then return false end
          if ttl == 0 then
            if left >= 0 then for _, key in ipairs(KEYS) do redis.call('PERSIST', key) end end
            return true
          end
          if left >= 0 and left >= ttl - math.min(3600000, math.floor(ttl / 2)) then return false end
          if not nowMs then
            local t = redis.call('TIME')
            nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          end
          local deadline = string.format('%d', nowMs + ttl)
          for _, key in ipairs(KEYS) do redis.call('PEXPIREAT', key, deadline) end
          return true
        end

        """

    /// How the log is written: `.batch` (one entry per batch, one message) or `.perCommit` (an entry and
    /// a message per commit, exactly as the single-commit script wrote them — for a rolling upgrade while
    /// nodes from before group commit still read the doc).
    enum LogMode: String {
        case batch = "b"
        case perCommit = "c"
    }

    /// `commit`'s mode argument: the log mode's letter, then `l` when the legacy re-push record may exist
    /// (`checkLegacy`): `b`, `bl`, `c` or `cl`.
    static func mode(_ logMode: LogMode, checkLegacy: Bool) -> String {
        switch (logMode, checkLegacy) {
        case (.batch, false): return "b"
        case (.batch, true): return "bl"
        case (.perCommit, false): return "c"
        case (.perCommit, true): return "cl"
        }
    }

    /// KEYS: the doc's clock key, `tandem:{D}:clock`, first: the script makes the doc's other keys
    ///   (`keySuffixes`) and its channel (`RedisKeys.channel(doc)`, `tandem:{D}`) from it. A single Redis
    ///   is given that key alone, a Cluster all of `keys(doc)` (`writeKeys`: named for slot migrations).
    /// ARGV: node, retention, docTTLMs (0: none), mode (`mode(_:checkLegacy:)`: log mode b|c, then l if
    ///   the legacy re-push record may exist), nowMs (the node's wall clock: the commits' `at`), growth ('0',
    ///   or `CREATED REMOVED MAXDOCRECORDS` for a batch that creates records: the size check),
    ///   n, token (recorded as the tail), afterTail (pipelined: `TOKEN@CLOCK`, run only if that is the
    ///   recorded tail and the head is CLOCK; empty otherwise), n × (sid, pushIdJSON, opsJSON),
    ///   e, e × (record id, a|e|v, version-or-empty),
    ///   (for 'e', the version may be the replica's: see the checksums below),
    ///   w, w × (record id, p|c|r, value-or-empty, commit index from 0)
    ///   (p: written, existed before the batch; c: written, was missing — may revive a tombstone; r: removed),
    ///   n × checksum delta of each commit (16 hex digits; absent from nodes before checksums),
    ///   then ownSubscribers: how many of the channel's subscribers are the caller (1 while its subscription
    ///   is confirmed, 0 while not); the message is published only if `PUBSUB NUMSUB` counts more. −1 or
    ///   absent: always publish (a Redis Cluster, where `NUMSUB` counts one server's subscribers only).
    ///   A node that subscribes after the script ran never heard the message anyway; it reads the head on
    ///   its subscription's confirmation (`DocShard.channelResubscribed`). The one case the count gets
    ///   wrong is Redis having dropped this node's subscription (a killed pub/sub client) before the node
    ///   noticed: another node's message is then skipped, and that node fills the gap on the next commit
    ///   or its next head check, as for any lost message.
    /// Returns `ok FIRSTCLOCK AT PUBLISHED[ SUM…]` (one string, single spaces: PUBLISHED 1|0, then the sum
    ///   after each commit, 16 hex digits, none when unknown; a table would cost Redis ~9,000 instructions
    ///   more per call to turn into a reply) | {'conflict', head} (also when a pipelined
    ///   batch's predecessor did not leave the state it was decided against) |
    ///   {'duplicate', head, {index, clock, …}} | {'too_large', head, count}. Nothing is written unless 'ok'.
    ///
    /// Checksums (issue 13) are computed by the node, not here: it has every record parsed in its replica
    /// and each record's hash cached, so a commit costs it one hash per record written, while hashing in
    /// Lua would mean reading the old values back and hashing byte by byte in the one thread every doc of
    /// the Redis shares (Lua 5.1 has neither 32-bit multiplication nor byte access without copies). The
    /// script only adds each commit's delta to the stored sum (two additions mod 2^32, exact in Lua's
    /// doubles) — a delta, not an absolute value, because another node's commit may have landed between
    /// the replica's head and this batch; the deltas of commits on different records add up regardless.
    ///
    /// Redis calls per batch, whatever its size (up to 1,000 records per call): HMGET pushids (the checksum
    /// too), HMGET versions (HGET for one record), INCRBY, HSET records + versions, XADD, PUBSUB NUMSUB (one
    /// per doc, also in a commit round), PUBLISH (only while another node listens), HSET pushids (the checksum too), ZADD
    /// pushlast; plus GET hsealed once the log is past retention, and, only when needed, GET of `:sum`
    /// (the checksum not in pushids for the clock before: a node of stop 30 committed last), GET of the clock (a batch pipelined behind another: its condition), EXISTS + HGET of
    /// the legacy record (`checkLegacy`), HLEN (records created), HDEL/ZADD
    /// (removals), ZREM (revivals), HMGET (HGET for one push) + HDEL (ring slots reused), every 64 clocks the trims, and
    /// deadlines for keys the batch created (the doc's first commit, its first tombstone, a new session).
    /// The doc's deadline itself is kept by the nodes that hold it open (`SyncReadScripts.head`, every
    /// few seconds): only they commit to it, so a commit need not look at it. (`TIME` and a `PTTL` per
    /// batch were two of the dozen commands of a batch of one.)
    ///
    /// Most batches are of one push until a node is busy, and then the script's own Lua, not its
    /// commands, was half of what a commit cost Redis (callgrind, docs/benchmarks.md, stops 24 and 29):
    /// so it keeps library functions in locals, makes no closure per call (the slice helpers are loops
    /// written out; `keepAlive`'s work is inlined for the rare commit that needs it; the trims, every 64
    /// clocks, make two), builds its small tables with their size, parses and formats numbers only where
    /// needed ('0' and '1' compared as text), and takes a batch of one push, one expected record and one
    /// written record without the general path's tables (its log entry's fields passed as they are). It
    /// is called with one key and no channel (each argument cost Redis ~1,000 instructions to parse and
    /// turn into a Lua string). `SIDE=server scripts/redis-cost.sh` measures it.
    ///
    /// The messages start with the kind and the node (`{"k":"c","node":N,…`, `{"k":"b","node":N,…`), so
    /// a node recognises its own commits by their first bytes and skips them unread: it delivered them
    /// from the script's reply already.
    static let commit = RedisScript(commitPrologue + commitBody)

    /// `commit`'s first lines: the doc's key and the call's header into the locals `commitBody` reads (a
    /// commit round passes them to its per-doc function instead, `roundHead`), and `i`, where the rest of
    /// the doc's arguments start in ARGV.
    static let commitPrologue = """
        -- KEYS[1] is the doc's clock, `tandem:{D}:clock`; the doc's other keys and its channel are made from
        -- it (they share its slot: the tag). A single Redis's call names it alone, a Cluster's every key of the
        -- doc (`GroupCommitScript.writeKeys`: a slot migration redirects the whole call, not a command halfway).
        -- PUBLISH stays `redis.call('PUBLISH', …)`: the cluster form of the script is made by rewriting
        -- exactly that (`ShardedPublishing`).
        local ARGV = ARGV -- read some thirty times
        local clockKey = KEYS[1]
        -- Numbers are read where they are used: a tonumber is a strtod, and most batches need few of them
        -- ('0' and '1' are how the node writes zero and one).
        local node, retention, docTTL, mode, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
        local growth, nText, token, afterTail = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
        local i = 10

        """

    /// The script of one doc's group commit after `commitPrologue`: what `commit` runs, and the body of
    /// `commitRound`'s per-doc function. Reads the header from the prologue's locals and the rest of its
    /// arguments from `ARGV[i]` on.
    static let commitBody = """
        local rcall, tonumber, format, sub, unpack, min = redis.call, tonumber, string.format, string.sub, unpack, math.min
        local prefix, channel = sub(clockKey, 1, -6), sub(clockKey, 1, -7) -- `tandem:{D}:`, `tandem:{D}`
        local records, versions, log, pushids, pushlast =
          prefix .. 'records', prefix .. 'versions', prefix .. 'log', prefix .. 'pushids', prefix .. 'pushlast'
        local perCommit, checkLegacy = mode == 'c' or mode == 'cl', mode == 'bl' or mode == 'cl'
        local n = nText == '1' and 1 or tonumber(nText)
        local RING = 64
        -- Lua's unpack takes a few thousand values at most: longer lists go to Redis in slices of SLICE (in
        -- loops written out where they are used: a helper function would be a closure made on every call).
        local SLICE = 1000

        -- Tables built with their size (`{a}`, or `{nil, nil}` for two slots) are allocated once; `{}` is
        -- rehashed as its first elements arrive (at 1, 2, 4, 8…: a third of a batch of three's Lua work before
        -- the lists of the general path were made with room for a few pushes).
        -- One push (most batches): its session, id and ops in locals; more: in tables.
        local sid1, pid1, ops1, sids, pids, ops
        if n == 1 then
          sid1, pid1, ops1 = ARGV[i], ARGV[i + 1], ARGV[i + 2]
          i = i + 3
        else
          sids, pids, ops = {nil, nil, nil, nil}, {nil, nil, nil, nil}, {nil, nil, nil, nil}
          for k = 1, n do
            sids[k], pids[k], ops[k] = ARGV[i], ARGV[i + 1], ARGV[i + 2]
            i = i + 3
          end
        end

        -- Re-pushes: one HMGET for every push's lookup (`SID=PUSHID`) and every session's counter (`SID`).
        -- For one push: {lookup, counter}, and no tables of sessions.
        -- The doc's checksum (`~sum`, see the checksums below) is read with them: one command less than a GET.
        local fields, sessions, counterAt, sumAt
        if n == 1 then
          fields, sumAt = {sid1 .. '=' .. pid1, sid1, '~sum', nil}, 3
        else
          fields, sessions, counterAt = {nil, nil, nil, nil, nil, nil, nil, nil}, {nil, nil, nil, nil}, {}
          for k = 1, n do fields[k] = sids[k] .. '=' .. pids[k] end
          local seen = {}
          for k = 1, n do
            if seen[fields[k]] then return redis.error_reply('ERR a batch repeats a push id') end
            seen[fields[k]] = true
          end
          for k = 1, n do
            if not counterAt[sids[k]] then
              sessions[#sessions + 1] = sids[k]
              fields[#fields + 1] = sids[k]
              counterAt[sids[k]] = #fields
            end
          end
          fields[#fields + 1] = '~sum'
          sumAt = #fields
        end
        -- Pipelined behind another batch of this node: decided against the state that batch leaves, so it
        -- runs only if that batch wrote the head and nothing came after (in the same HMGET, plus one GET).
        -- afterTail is `TOKEN@CLOCK`, CLOCK the head that batch leaves.
        local tailAt
        if afterTail ~= '' then
          fields[#fields + 1] = '~tail'
          tailAt = #fields
        end
        local known
        if #fields <= SLICE then
          known = rcall('HMGET', pushids, unpack(fields))
        else
          known = {}
          for s = 1, #fields, SLICE do
            local part = rcall('HMGET', pushids, unpack(fields, s, min(s + SLICE - 1, #fields)))
            for j = 1, #part do known[s + j - 1] = part[j] end
          end
        end
        if tailAt then
          local head = rcall('GET', clockKey) or '0'
          if known[tailAt] ~= afterTail or head ~= string.match(afterTail, '@(%d+)$') then return {'conflict', head} end
        end
        local dups
        for k = 1, n do
          if known[k] then
            dups = dups or {}
            dups[#dups + 1] = k - 1; dups[#dups + 1] = known[k]
          end
        end
        local legacy = checkLegacy and rcall('EXISTS', prefix .. 'pushes') == 1
        if legacy then
          if n == 1 then sids, pids, sessions = {sid1}, {pid1}, {sid1} end
          for _, sid in ipairs(sessions) do
            local recent = rcall('HGET', prefix .. 'pushes', sid)
            if recent then
              recent = '\\n' .. recent .. '\\n'
              for k = 1, n do
                if sids[k] == sid and not known[k] then
                  local at = string.find(recent, '\\t' .. pids[k] .. '\\n', 1, true)
                  if at then
                    local lineStart = at
                    while sub(recent, lineStart - 1, lineStart - 1) ~= '\\n' do lineStart = lineStart - 1 end
                    dups = dups or {}
                    dups[#dups + 1] = k - 1; dups[#dups + 1] = sub(recent, lineStart, at - 1)
                  end
                end
              end
            end
          end
        end
        if dups then return {'duplicate', rcall('GET', clockKey) or '0', dups} end

        -- Expectations: each record's first touch in the batch, one HMGET (HGET for one record; a live record
        -- has a version). An 'e' (exists) may name the version the node's replica had: when Redis's differs,
        -- the record changed under the replica and the batch's checksum deltas start from a stale value.
        local sumStale = false
        local e = ARGV[i]
        e = e == '1' and 1 or e == '0' and 0 or tonumber(e)
        i = i + 1
        if e > 0 then
          local have
          if e == 1 then
            have = rcall('HGET', versions, ARGV[i]) -- the value (false: none), not a table
          else
            local ids = {nil, nil}
            for k = 1, e do ids[k] = ARGV[i + (k - 1) * 3] end
            if e <= SLICE then
              have = rcall('HMGET', versions, unpack(ids))
            else
              have = {}
              for s = 1, e, SLICE do
                local part = rcall('HMGET', versions, unpack(ids, s, min(s + SLICE - 1, e)))
                for j = 1, #part do have[s + j - 1] = part[j] end
              end
            end
          end
          for k = 1, e do
            local kind, version, v = ARGV[i + (k - 1) * 3 + 1], ARGV[i + (k - 1) * 3 + 2], nil
            if e == 1 then v = have else v = have[k] end
            local ok
            if kind == 'v' then
              ok = (v or '0') == version
            elseif kind == 'e' then
              ok = v ~= false
              if ok and version ~= '' and v ~= version then sumStale = true end
            else
              ok = v == false
            end
            if not ok then return {'conflict', rcall('GET', clockKey) or '0'} end
          end
          i = i + e * 3
        end

        local recordsWereEmpty = false
        -- growth: '0', or `CREATED REMOVED MAXRECORDS` for a batch that creates records.
        if growth ~= '0' then
          local created, removed, maxRecords = string.match(growth, '^(%d+) (%d+) (%d+)$')
          local count = rcall('HLEN', records)
          recordsWereEmpty = count == 0
          local after = count + tonumber(created) - tonumber(removed)
          if after > tonumber(maxRecords) then return {'too_large', rcall('GET', clockKey) or '0', format('%d', after)} end
        end

        local last = rcall('INCRBY', clockKey, nText)
        local first = last - n + 1
        -- The first and last clocks as text, each formatted once (the same for a batch of one).
        local firstText = format('%d', first)
        local lastText = n == 1 and firstText or format('%d', last)
        -- More pushes: every commit's clock as text, once.
        local clocks
        if n > 1 then
          clocks = {firstText, nil, nil, nil}
          for k = 2, n - 1 do clocks[k] = format('%d', first + k - 1) end
          clocks[n] = lastText
        end

        -- Final record values, versions and tombstones, once per record. One written record (most batches of
        -- one push) goes straight to its two HSETs; more are gathered for one HSET per hash.
        local w = ARGV[i]
        w = w == '1' and 1 or w == '0' and 0 or tonumber(w)
        i = i + 1
        local puts, putVersions, revived, dels, tombAdds
        if w == 1 and ARGV[i + 1] ~= 'r' then
          local id = ARGV[i]
          -- Writes before deletes: a hash never empties in between (an emptied key loses its TTL).
          rcall('HSET', records, id, ARGV[i + 2])
          rcall('HSET', versions, id, ARGV[i + 3] == '0' and firstText or format('%d', first + tonumber(ARGV[i + 3])))
          if ARGV[i + 1] == 'c' then rcall('ZREM', prefix .. 'tombs', id) end
          i = i + 4
          tombAdds = 0
        else
          puts, putVersions, revived, dels, tombAdds = {nil, nil, nil, nil, nil, nil, nil, nil}, {nil, nil, nil, nil, nil, nil, nil, nil}, {}, {}, {}
          for _ = 1, w do
            local id, kind, value, index = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
            local c = index == '0' and firstText or clocks[tonumber(index) + 1]
            i = i + 4
            if kind == 'r' then
              dels[#dels + 1] = id
              tombAdds[#tombAdds + 1] = c; tombAdds[#tombAdds + 1] = id
            else
              puts[#puts + 1] = id; puts[#puts + 1] = value
              putVersions[#putVersions + 1] = id; putVersions[#putVersions + 1] = c
              if kind == 'c' then revived[#revived + 1] = id end
            end
          end
          -- Writes before deletes: a hash never empties in between (an emptied key loses its TTL).
          for s = 1, #puts, SLICE do rcall('HSET', records, unpack(puts, s, min(s + SLICE - 1, #puts))) end
          for s = 1, #putVersions, SLICE do rcall('HSET', versions, unpack(putVersions, s, min(s + SLICE - 1, #putVersions))) end
          for s = 1, #revived, SLICE do rcall('ZREM', prefix .. 'tombs', unpack(revived, s, min(s + SLICE - 1, #revived))) end
          for s = 1, #dels, SLICE do
            rcall('HDEL', records, unpack(dels, s, min(s + SLICE - 1, #dels)))
            rcall('HDEL', versions, unpack(dels, s, min(s + SLICE - 1, #dels)))
          end
          for s = 1, #tombAdds, SLICE do rcall('ZADD', prefix .. 'tombs', unpack(tombAdds, s, min(s + SLICE - 1, #tombAdds))) end
          tombAdds = #tombAdds
        end

        -- Checksums: the stored sum (valid for clock first - 1, or a new doc's 0) plus each commit's delta.
        -- Stored as `CLOCK:HEX16` in the pushids hash (`~sum`, read by the first HMGET, written by its HSET
        -- below: no command of its own); nodes before stop 31 kept it in `tandem:{D}:sum` (GET + SET), which
        -- is read when `~sum` is not the clock before (their commit came last: a rolling upgrade) and no
        -- longer written. Each place only ever holds a sum tagged with the clock it describes, so either
        -- version finds the other's commits left its own place stale (unknown), never wrong.
        local sums, sumText = n == 1 and {nil} or {nil, nil, nil, nil}, nil
        -- Unknown (a stale delta, or no stored sum for the clock before): no sums, and the stored one stays
        -- tagged with an older clock, so it is stale until a node seeds it again (SyncReadScripts.seedSum).
        if ARGV[i + n - 1] and not sumStale then
          local lane0, lane1 = nil, nil
          if first == 1 then
            lane0, lane1 = 0, 0
          else
            -- `CLOCK:HEX16`, read without a pattern: its clock must be first - 1.
            local stored = known[sumAt]
            if not (stored and sub(stored, -17, -17) == ':' and tonumber(sub(stored, 1, -18)) == first - 1) then
              stored = rcall('GET', prefix .. 'sum')
              if not (stored and sub(stored, -17, -17) == ':' and tonumber(sub(stored, 1, -18)) == first - 1) then stored = nil end
            end
            if stored then
              local a, b = tonumber(sub(stored, -16, -9), 16), tonumber(sub(stored, -8), 16)
              if a and b then lane0, lane1 = a, b end
            end
          end
          if lane0 then
            for k = 1, n do
              local d = ARGV[i + k - 1]
              lane0 = (lane0 + tonumber(sub(d, 1, 8), 16)) % 4294967296
              lane1 = (lane1 + tonumber(sub(d, 9, 16), 16)) % 4294967296
              sums[k] = format('%08x%08x', lane0, lane1)
            end
            sumText = lastText .. ':' .. sums[n] -- stored by the HSET of pushids below
          end
        end

        -- The message is published only if someone else listens on the doc's channel: `PUBSUB NUMSUB`
        -- above the caller's own subscriptions (ARGV after the deltas; absent or -1: always publish). A
        -- node alone on a doc heard each of its batches back, only to skip it (stop 26). Exact under races
        -- as presence's `docWrite`: the count is read atomically with the writes the message announces.
        local own = ARGV[i + n]
        own = own == '1' and 1 or own == '0' and 0 or (own == nil or own == '-1') and -1 or tonumber(own)
        local publish = own < 0 or rcall('PUBSUB', 'NUMSUB', channel)[2] > own

        local floor = last - tonumber(retention)

        -- History (issue 15): the log keeps every commit the sealer has not moved into history yet
        -- (`tandem:{D}:hsealed`); one GET, only once the log is long enough to trim.
        local logFloor = floor
        if floor > 0 then logFloor = min(floor, tonumber(rcall('GET', prefix .. 'hsealed') or '0')) end

        -- The log and the message (the sum, when known, as `"sum":"HEX"`).
        if n == 1 then
          -- One push: the classic entry, its fields passed as they are (no table). Its id is the clock: XADD
          -- takes `C` for `C-0`.
          local sid, pid, op, sum = sid1, pid1, ops1, sums[1]
          if logFloor > 0 then
            if sum then
              rcall('XADD', log, 'MINID', '~', format('%d', logFloor + 1), firstText, 'ops', op, 'by', sid,
                'node', node, 'id', pid, 'at', at, 'sum', sum)
            else
              rcall('XADD', log, 'MINID', '~', format('%d', logFloor + 1), firstText, 'ops', op, 'by', sid,
                'node', node, 'id', pid, 'at', at)
            end
          elseif sum then
            rcall('XADD', log, firstText, 'ops', op, 'by', sid, 'node', node, 'id', pid, 'at', at, 'sum', sum)
          else
            rcall('XADD', log, firstText, 'ops', op, 'by', sid, 'node', node, 'id', pid, 'at', at)
          end
          if publish then
            redis.call('PUBLISH', channel, '{"k":"c","node":"' .. node .. '","clock":' .. firstText .. ',"ops":' .. op ..
              ',"by":"' .. sid .. '","id":' .. pid .. ',"at":' .. at .. (sum and ',"sum":"' .. sum .. '"}' or '}'))
          end
        elseif perCommit then
          for k = 1, n do
            local c, sum = clocks[k], sums[k]
            local entry = {c .. '-0', 'ops', ops[k], 'by', sids[k], 'node', node, 'id', pids[k], 'at', at}
            if sum then entry[12] = 'sum'; entry[13] = sum end
            if k == n and logFloor > 0 then
              rcall('XADD', log, 'MINID', '~', format('%d', logFloor + 1), unpack(entry))
            else
              rcall('XADD', log, unpack(entry))
            end
            if publish then
              redis.call('PUBLISH', channel, '{"k":"c","node":"' .. node .. '","clock":' .. c .. ',"ops":' .. ops[k] ..
                ',"by":"' .. sids[k] .. '","id":' .. pids[k] .. ',"at":' .. at .. (sum and ',"sum":"' .. sum .. '"}' or '}'))
            end
          end
        else
          local members = {nil, nil, nil, nil}
          for k = 1, n do
            local sum = sums[k]
            members[k] = '{"by":"' .. sids[k] .. '","id":' .. pids[k] .. ',"ops":' .. ops[k] ..
              (sum and ',"sum":"' .. sum .. '"}' or '}')
          end
          local b = '[' .. table.concat(members, ',') .. ']'
          if logFloor > 0 then
            rcall('XADD', log, 'MINID', '~', format('%d', logFloor + 1), lastText .. '-0', 'n', nText, 'node', node, 'at', at, 'b', b)
          else
            rcall('XADD', log, lastText .. '-0', 'n', nText, 'node', node, 'at', at, 'b', b)
          end
          if publish then
            redis.call('PUBLISH', channel,
              '{"k":"b","node":"' .. node .. '","first":' .. firstText .. ',"at":' .. at .. ',"b":' .. b .. '}')
          end
        end

        -- Record the push ids: per session a counter and a ring of its last 64, plus a lookup per id.
        local newSession = false
        if n == 1 then
          -- One push (most batches under light load): the same fields as below, without their tables.
          local sid, pid = sid1, pid1
          local before = known[2]
          before = before and tonumber(before) or 0
          newSession = before == 0
          local slot = sid .. ':' .. format('%d', before % RING)
          if before >= RING then
            local old = rcall('HGET', pushids, slot)
            if old then rcall('HDEL', pushids, sid .. '=' .. old) end
          end
          if token ~= '' then
            if sumText then
              rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1), '~tail', token .. '@' .. firstText,
                '~sum', sumText)
            else
              rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1), '~tail', token .. '@' .. firstText)
            end
          elseif sumText then
            rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1), '~sum', sumText)
          else
            rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1))
          end
          -- One ZADD per commit. Writing the score 64 clocks ahead and again only once a commit reached it
          -- (with a `SID^` field in this hash saying which score the session's own commits left, checked
          -- against its counter) saved 0.92 commands per commit but cost ~5,000 instructions more than it
          -- saved (Lua and its garbage: callgrind, stop 31, docs/benchmarks.md).
          rcall('ZADD', pushlast, firstText, sid)
        else
          -- Sessions by their index j: sessions[j], its counter known[n + j] (fields: the n lookups, then the
          -- counters). Per session the counter before the batch and after it, and its last push; per push its
          -- sequence number.
          local before, count, lastK, seqs = {nil, nil, nil, nil}, {nil, nil, nil, nil}, {nil, nil, nil, nil}, {nil, nil, nil, nil}
          for j = 1, #sessions do
            local b = known[n + j]
            b = b and tonumber(b) or 0
            before[j] = b; count[j] = b
            if b == 0 then newSession = true end
          end
          -- Ring slots reused: one of a push before the batch (its id is read and its lookup deleted), or
          -- `crowded`, one of this same batch (a session with more than 64 pushes in it).
          local fetch, fetchSid, slotTexts, crowded = {nil, nil, nil, nil}, {nil, nil, nil, nil}, {nil, nil, nil, nil}, false
          for k = 1, n do
            local j = counterAt[sids[k]] - n
            local seq = count[j] + 1
            count[j] = seq; lastK[j] = k; seqs[k] = seq
            slotTexts[k] = sids[k] .. ':' .. format('%d', (seq - 1) % RING)
            if seq > RING then
              if seq - RING <= before[j] then
                fetch[#fetch + 1] = slotTexts[k]
                fetchSid[#fetchSid + 1] = sids[k]
              else
                crowded = true
              end
            end
          end
          local evicted = {nil, nil, nil, nil}
          for s = 1, #fetch, SLICE do
            local old = rcall('HMGET', pushids, unpack(fetch, s, min(s + SLICE - 1, #fetch)))
            for j = 1, #old do
              if old[j] then evicted[#evicted + 1] = fetchSid[s + j - 1] .. '=' .. old[j] end
            end
          end
          local sets = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
          if not crowded then
            -- Every slot and lookup is written once: straight into the HSET's list.
            for k = 1, n do
              sets[#sets + 1] = slotTexts[k]; sets[#sets + 1] = pids[k]
              sets[#sets + 1] = fields[k]; sets[#sets + 1] = clocks[k]
            end
          else
            local slots, lookups = {}, {}
            for k = 1, n do
              local slot = slotTexts[k]
              if seqs[k] > RING and seqs[k] - RING > before[counterAt[sids[k]] - n] then
                lookups[sids[k] .. '=' .. slots[slot]] = nil -- evicts a push of this same batch
              end
              slots[slot] = pids[k]
              lookups[fields[k]] = clocks[k]
            end
            for f, v in pairs(slots) do sets[#sets + 1] = f; sets[#sets + 1] = v end
            for f, v in pairs(lookups) do sets[#sets + 1] = f; sets[#sets + 1] = v end
          end
          for s = 1, #evicted, SLICE do rcall('HDEL', pushids, unpack(evicted, s, min(s + SLICE - 1, #evicted))) end
          for j = 1, #sessions do sets[#sets + 1] = sessions[j]; sets[#sets + 1] = format('%d', count[j]) end
          if token ~= '' then sets[#sets + 1] = '~tail'; sets[#sets + 1] = token .. '@' .. lastText end
          if sumText then sets[#sets + 1] = '~sum'; sets[#sets + 1] = sumText end
          for s = 1, #sets, SLICE do rcall('HSET', pushids, unpack(sets, s, min(s + SLICE - 1, #sets))) end
          local idleScores = {nil, nil, nil, nil, nil, nil, nil, nil}
          for j = 1, #sessions do idleScores[#idleScores + 1] = clocks[lastK[j]]; idleScores[#idleScores + 1] = sessions[j] end
          for s = 1, #idleScores, SLICE do rcall('ZADD', pushlast, unpack(idleScores, s, min(s + SLICE - 1, #idleScores))) end
        end

        -- Every 64 clocks (or every batch of 64 or more): forget tombstones and sessions older than the
        -- retention. At most one session per clock goes idle, so n + 64 per round keeps up.
        if floor > 0 and (n >= 64 or math.floor(floor / 64) > math.floor((floor - n) / 64)) then
          -- Lists here may be long (64 slots per session): HMGET and HDEL go in slices.
          local function hmget(key, list)
            local out = {}
            for s = 1, #list, SLICE do
              local part = rcall('HMGET', key, unpack(list, s, min(s + SLICE - 1, #list)))
              for j = 1, #part do out[s + j - 1] = part[j] end
            end
            return out
          end
          local function each(cmd, key, list)
            for s = 1, #list, SLICE do rcall(cmd, key, unpack(list, s, min(s + SLICE - 1, #list))) end
          end
          rcall('ZREMRANGEBYSCORE', prefix .. 'tombs', '-inf', floor)
          local idle = rcall('ZRANGEBYSCORE', pushlast, '-inf', floor, 'LIMIT', 0, n + 64)
          if #idle > 0 then
            local counters = hmget(pushids, idle)
            local drop, slotFields, slotSids = {}, {}, {}
            for j, sid in ipairs(idle) do
              drop[#drop + 1] = sid
              for s = 0, min(tonumber(counters[j]) or 0, RING) - 1 do
                slotFields[#slotFields + 1] = sid .. ':' .. s
                slotSids[#slotSids + 1] = sid
              end
            end
            local oldIds = hmget(pushids, slotFields)
            for j, f in ipairs(slotFields) do
              drop[#drop + 1] = f
              if oldIds[j] then drop[#drop + 1] = slotSids[j] .. '=' .. oldIds[j] end
            end
            each('HDEL', pushids, drop)
            each('ZREM', pushlast, idle)
          end
          if legacy then
            local idleLegacy = rcall('ZRANGEBYSCORE', prefix .. 'pushers', '-inf', floor, 'LIMIT', 0, 100)
            if #idleLegacy > 0 then
              each('HDEL', prefix .. 'pushes', idleLegacy)
              each('ZREM', prefix .. 'pushers', idleLegacy)
            end
          end
        end

        -- Doc TTL: keys this batch created get the doc's deadline (every key of a doc expires together).
        -- The deadline itself is moved by the nodes holding the doc open (their head checks).
        if docTTL ~= '0' then
          -- Every key gets one for a new doc (or one that had expired), or when the clock has none (an earlier
          -- setting of 0): what `keepAlive` does, over the keys made from the clock's.
          local all = first == 1
          if not all and (recordsWereEmpty or tombAdds > 0 or newSession) then
            local fresh = {}
            if recordsWereEmpty then fresh[#fresh + 1] = records; fresh[#fresh + 1] = versions end
            if tombAdds > 0 and rcall('PTTL', prefix .. 'tombs') == -1 then fresh[#fresh + 1] = prefix .. 'tombs' end
            if newSession then
              if rcall('PTTL', pushids) == -1 then fresh[#fresh + 1] = pushids end
              if rcall('PTTL', pushlast) == -1 then fresh[#fresh + 1] = pushlast end
            end
            if #fresh > 0 then
              local deadline = rcall('PEXPIRETIME', clockKey)
              if deadline < 0 then
                all = true
              else
                for _, key in ipairs(fresh) do rcall('PEXPIREAT', key, deadline) end
              end
            end
          end
          if all then
            docTTL = tonumber(docTTL)
            local left = rcall('PTTL', clockKey)
            if left < 0 or left < docTTL - min(3600000, math.floor(docTTL / 2)) then
              local deadline = format('%d', tonumber(at) + docTTL)
              -- GroupCommitScript.keySuffixes, in order.
              for _, suffix in ipairs({'clock', 'records', 'versions', 'tombs', 'log', 'pushids', 'pushlast', 'pushes',
                'pushers', 'sum', 'hsealed', 'hsegs', 'hindex', 'hckpts', 'hversions'}) do
                rcall('PEXPIREAT', prefix .. suffix, deadline)
              end
            end
          end
        end
        -- One string, not a table: Redis turns a table into a reply field by field, after looking up seven
        -- names in it (err, ok, double, …), for each table.
        return 'ok ' .. firstText .. ' ' .. at .. (publish and ' 1' or ' 0') .. (sums[1] and ' ' .. (n == 1 and sums[1] or table.concat(sums, ' ')) or '')
        """

    /// A commit round (issue 8, stop 30): the group commits of several docs in ONE call, each decided
    /// exactly as `commit` decides a doc's alone — it is `commitBody` itself, wrapped as a local function
    /// of what `commitPrologue` sets for `commit` (`roundHead` + `commitBody` + `roundTail`), called once
    /// per doc in order. A doc's 'conflict', 'duplicate', 'too_large' (or an error reply) is its own element of the
    /// reply and changes nothing for the others; a Redis error that stops the script (OOM at its first
    /// write, a killed script) fails the whole call, and each doc treats it as a failed commit.
    ///
    /// Each doc counts its channel's listeners (`PUBSUB NUMSUB`) itself: one NUMSUB for the round, over a
    /// first pass finding each doc's channel and ownSubscribers, cost Redis ~3,000 instructions more per
    /// doc than the NUMSUBs it saved (callgrind, rounds of 2; stop 31, docs/benchmarks.md).
    ///
    /// A single Redis only: the docs' keys are in different Cluster slots (a Cluster keeps one `commit`
    /// per doc). What Redis pays per call whatever it carries (dispatch, the script's set-up and reply,
    /// its GC step every 50 calls) and the arguments every doc repeats are paid once per round: ~157,000
    /// instructions per commit of one push in rounds of 16 against ~171,000 alone (docs/benchmarks.md).
    ///
    /// KEYS: each doc's clock key, `tandem:{D}:clock`, in the round's order.
    /// ARGV: what every doc's `commit` call would repeat, once — node, retention, docTTLMs, nowMs — then
    ///   per doc, in the same order, the rest of `commit`'s ARGV for it (from its mode to its
    ///   ownSubscribers). Each argument costs Redis ~1,000 instructions to read and hand to Lua, whatever
    ///   it holds; the script finds where a doc's part ends from its counts (n, e, w).
    /// Returns a table: each doc's reply as `commit` returns it.
    static let commitRound = RedisScript(roundHead + commitBody + roundTail)

    /// `commitRound` up to `commitBody`: the body becomes `commitDoc`, a function of what `commitPrologue`
    /// sets — the doc's clock key, ARGV (the round's own: no copy of the doc's part, ~7,000 instructions
    /// per doc as a table), where the doc's part starts, and its header.
    static let roundHead = """
        local function commitDoc(clockKey, ARGV, i, node, retention, docTTL, mode, at, growth, nText, token, afterTail)

        """

    /// `commitRound` after `commitBody`: per doc, its header (the shared four and its own `mode growth n
    /// token tail`) to `commitDoc`, which reads the rest from ARGV where it starts (3n push fields, e, 3e,
    /// w, 4w, n deltas, ownSubscribers: where the next doc starts follows from n, e and w); its reply in
    /// the round's.
    static let roundTail = """

        end
        local rargv, tonumber = ARGV, tonumber
        local node, retention, docTTL, now = rargv[1], rargv[2], rargv[3], rargv[4]
        local function count(text) return text == '1' and 1 or text == '0' and 0 or tonumber(text) end
        local replies, a = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}, 5
        for d = 1, #KEYS do
          local nText = rargv[a + 2]
          local n = count(nText)
          local e = count(rargv[a + 5 + 3 * n])
          local w = count(rargv[a + 6 + 3 * n + 3 * e])
          replies[d] = commitDoc(KEYS[d], rargv, a + 5, node, retention, docTTL, rargv[a], now, rargv[a + 1], nText, rargv[a + 3],
            rargv[a + 4])
          a = a + 8 + 4 * n + 3 * e + 4 * w -- past its ownSubscribers
        end
        return replies
        """
}
