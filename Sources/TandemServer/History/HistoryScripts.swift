import TandemRedis

/// The scripts of a doc's history (issue 15, docs/history.md). Keys: `GroupCommitScript.keys(doc)`, all
/// tagged `{D}` (one Cluster slot); the history's own are KEYS[11…15]:
/// - `tandem:{D}:hsealed` — string: every commit up to this clock is in a segment. The commit script
///   never trims the log past it, so nothing leaves the live log before it is sealed.
/// - `tandem:{D}:hsegs` — hash: a segment's last clock → its blob (`HistoryBlob`, `HistoryCodec`).
/// - `tandem:{D}:hindex` — sorted set: score a segment's last clock, member `FIRST:LAST:ATMAX` (ATMAX: the
///   latest commit time up to its end, monotonic, for `?time=`).
/// - `tandem:{D}:hckpts` — hash: clock → checkpoint blob (the state after that commit), or (blobs v5)
///   `d:CLOCK` → a delta checkpoint: the ops from the checkpoint before it (`HistoryCodec.encodeCheckpointDelta`),
///   and `a:CLOCK` → the authors of the version at CLOCK (`HistoryVersion.authorsJSON`; none for the base).
///   Every version entry has exactly one of `CLOCK` and `d:CLOCK`; a delta's chain back to a full one
///   is at most `maxChain` long (the sealer writes a full one every `HistoryPolicy.fullCheckpointEvery`).
/// - `tandem:{D}:hversions` — sorted set: score a checkpoint's clock, member its `HistoryVersion.member`
///   (`CLOCK:AT:COMMITS:MORE`; history written before v4 has the version's JSON, authors included).
/// They carry the doc's deadline (`--doc-ttl`): the scripts below give the ones they create the clock's.
enum HistoryScripts {
    static let common = """
        local clockKey, recordsKey, log = KEYS[1], KEYS[2], KEYS[5]
        local sealedKey, segs, index, ckpts, versions = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
        local function fmt(x) return string.format('%d', x) end
        -- Checkpoints a delta may stand on, walking back (`HistoryStore.maxCheckpointChain`).
        local maxChain = 64
        -- A version member's commit time: `CLOCK:AT:COMMITS:MORE`, or the JSON of history before v4.
        local function versionAt(member)
          return tonumber(string.match(member, '^%d+:(%d+):') or string.match(member, '"at":(%d+)'))
        end
        -- The first clock the live log holds (a batch entry's id is its last clock), nil when empty.
        local function firstLogClock()
          local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
          if #first == 0 then return nil end
          local n, fields = 1, first[1][2]
          for j = 1, #fields, 2 do if fields[j] == 'n' then n = tonumber(fields[j + 1]) end end
          return tonumber(string.match(first[1][1], '^(%d+)')) - n + 1
        end
        -- Log entries holding clocks from..to (the first may start before): at most maxEntries of them and
        -- about maxBytes of field values (at least one entry); returns the entries and whether `to` was
        -- reached. Entries are at most a push or a batch each (--max-push-bytes, --max-batch-bytes).
        local function logRange(from, to, maxEntries, maxBytes)
          local out, cursor, bytes = {}, fmt(from) .. '-0', 0
          while #out < maxEntries and (#out == 0 or bytes < maxBytes) do
            local got = redis.call('XRANGE', log, cursor, '+', 'COUNT', math.min(16, maxEntries - #out))
            for _, entry in ipairs(got) do
              out[#out + 1] = entry
              cursor = '(' .. entry[1]
              local fields = entry[2]
              for j = 2, #fields, 2 do bytes = bytes + #fields[j] end
              if tonumber(string.match(entry[1], '^(%d+)')) >= to then return out, true end
            end
            if #got == 0 then return out, false end
          end
          return out, false
        end

        """

    /// KEYS: keys(doc). ARGV: maxEntries (the segment size: log entries to return, and commits after
    /// `hsealed` to reach, never past the head), nowMs, maxBytes (of those entries),
    /// `json` to write a new base's version entry as JSON (`--history-format 3`). Starts the doc's history when it
    /// has none (a checkpoint at 0 when the log still starts at clock 1, else the state at the head, built
    /// here from the records: the clocks before it were trimmed before history existed), and starts it
    /// again at the head after a gap (a node of an older version trimmed unsealed commits).
    /// Returns {'empty'} (no commits) | {'ok', head, sealed, last checkpoint's version JSON, entries after
    /// sealed (raw stream entries, the first may start before), commits lost to a rebase here (0 but after
    /// a gap: the commits after the old `hsealed` up to the head, which the history will never hold),
    /// segments since that checkpoint}.
    static let sealRead = RedisScript(
        common + """
        local head = tonumber(redis.call('GET', clockKey) or '0')
        if head == 0 then return {'empty'} end
        local sealed = redis.call('GET', sealedKey)
        local firstClock = firstLogClock()
        local rebased = 0
        if not sealed or (head > tonumber(sealed) and (not firstClock or firstClock > tonumber(sealed) + 1)) then
          local base, blob, at
          if not sealed and firstClock == 1 then
            -- The empty state before commit 1. Its version entry carries commit 1's time (the first log
            -- entry's): --checkpoint-interval counts from the doc's first commit, so the doc's checkpoints
            -- fall on its own grid rather than at the first segment's end, whenever that was sealed.
            local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1][2]
            at = 0
            for j = 1, #first, 2 do if first[j] == 'at' then at = tonumber(first[j + 1]) or 0 end end
            base, blob = 0, '{"clock":0,"at":0,"records":{}}'
          else
            local flat = redis.call('HGETALL', recordsKey)
            local parts = {}
            for j = 1, #flat, 2 do parts[#parts + 1] = cjson.encode(flat[j]) .. ':' .. flat[j + 1] end
            base, at = head, tonumber(ARGV[2])
            blob = '{"clock":' .. fmt(base) .. ',"at":' .. fmt(at) .. ',"records":{' .. table.concat(parts, ',') .. '}}'
            if sealed then rebased = head - tonumber(sealed) end
          end
          redis.call('HSET', ckpts, fmt(base), blob)
          if ARGV[4] == 'json' then
            redis.call('ZADD', versions, base,
              '{"clock":' .. fmt(base) .. ',"at":' .. fmt(at) .. ',"commits":' .. fmt(base) .. ',"by":[],"moreAuthors":false}')
          else
            redis.call('ZADD', versions, base, fmt(base) .. ':' .. fmt(at) .. ':' .. fmt(base) .. ':0')
          end
          redis.call('SET', sealedKey, fmt(base))
          local deadline = redis.call('PEXPIRETIME', clockKey)
          if deadline > 0 then for k = 11, 15 do redis.call('PEXPIREAT', KEYS[k], deadline) end end
          sealed = fmt(base)
        end
        local last = redis.call('ZREVRANGE', versions, 0, 0, 'WITHSCORES')
        local since = last[2] and redis.call('ZCOUNT', index, '(' .. last[2], '+inf') or 0
        local entries = {}
        -- Up to the entry holding the segment's last possible commit, not the head: an entry is a batch,
        -- so 2,048 entries of a hot doc were ~30 segments' worth, all decoded by the node for one segment
        -- (issue 8 stop 25).
        if head > tonumber(sealed) then
          entries = logRange(tonumber(sealed) + 1, math.min(head, tonumber(sealed) + tonumber(ARGV[1])), tonumber(ARGV[1]), tonumber(ARGV[3]))
        end
        return {'ok', fmt(head), sealed, last[1] or '', entries, rebased, since}
        """)

    /// KEYS: keys(doc). ARGV: expected sealed clock, first, last, segment blob, latest commit time in the
    /// segment, history cutoff ms (0: keep everything), then for each checkpoint the segment holds: its
    /// clock, kind (`d` for a delta, stored under `d:CLOCK`; empty for a full one), blob, version member
    /// and the version's authors JSON.
    /// Writes the segment (and checkpoints) and moves `hsealed` to `last`, unless another sealer moved it
    /// first ({'moved'}): all in one script, so a node that dies around it leaves either nothing or all
    /// of it, and a seal sent again after its reply was lost finds `hsealed` moved and writes nothing.
    /// With a cutoff, drops what only serves states older than the newest full checkpoint committed
    /// before it (a few per call): the checkpoints before a full one, with the deltas standing on them. Returns {'ok', dropped checkpoints, bytes the history takes
    /// (MEMORY USAGE, sampled)}.
    static let sealWrite = RedisScript(
        common + """
        if (redis.call('GET', sealedKey) or '') ~= ARGV[1] then return {'moved'} end
        local maxAt = tonumber(ARGV[5])
        local prev = redis.call('ZREVRANGE', index, 0, 0)
        if #prev > 0 then
          local before = tonumber(string.match(prev[1], ':(%d+)$'))
          if before and before > maxAt then maxAt = before end
        end
        redis.call('HSET', segs, ARGV[3], ARGV[4])
        redis.call('ZADD', index, ARGV[3], ARGV[2] .. ':' .. ARGV[3] .. ':' .. fmt(maxAt))
        redis.call('SET', sealedKey, ARGV[3])
        for j = 7, #ARGV, 5 do
          redis.call('HSET', ckpts, (ARGV[j + 1] == 'd' and 'd:' or '') .. ARGV[j], ARGV[j + 2])
          if ARGV[j + 4] ~= '' then redis.call('HSET', ckpts, 'a:' .. ARGV[j], ARGV[j + 4]) end
          redis.call('ZADD', versions, ARGV[j], ARGV[j + 3])
        end
        local cutoff, dropped = tonumber(ARGV[6]), 0
        while cutoff > 0 and dropped < 8 do
          -- The oldest checkpoints, and the first full one after the oldest: everything before it goes
          -- once it is older than the cutoff (a delta never outlives the checkpoints it stands on).
          local oldest = redis.call('ZRANGE', versions, 0, maxChain, 'WITHSCORES')
          local full
          for j = 3, #oldest, 2 do
            if redis.call('HEXISTS', ckpts, oldest[j + 1]) == 1 then full = j; break end
          end
          if not full then break end
          local nextAt = versionAt(oldest[full])
          if not nextAt or nextAt > cutoff then break end
          local keep = oldest[full + 1]
          local old = redis.call('ZRANGEBYSCORE', index, '-inf', keep, 'LIMIT', 0, 256)
          for _, member in ipairs(old) do redis.call('HDEL', segs, string.match(member, ':(%d+):')) end
          if #old > 0 then redis.call('ZREM', index, unpack(old)) end
          if #old < 256 then
            for j = 1, full - 2, 2 do
              redis.call('HDEL', ckpts, oldest[j + 1], 'd:' .. oldest[j + 1], 'a:' .. oldest[j + 1])
              redis.call('ZREM', versions, oldest[j])
              dropped = dropped + 1
            end
          end
        end
        local deadline = redis.call('PEXPIRETIME', clockKey)
        if deadline > 0 then for k = 11, 15 do redis.call('PEXPIREAT', KEYS[k], deadline) end end
        local bytes = 0
        for k = 11, 15 do bytes = bytes + (redis.call('MEMORY', 'USAGE', KEYS[k]) or 0) end
        return {'ok', dropped, bytes}
        """)

    /// KEYS: keys(doc). ARGV: clock, maxEntries (live-log entries), maxSegments, maxBytes (of log entries). What the state after
    /// `clock` is made of: the nearest checkpoint at or before it, the segments after it up to the clock
    /// (or `sealed`), and the live log's entries after `sealed` up to the clock.
    /// A delta checkpoint comes with the chain it stands on: the full checkpoint before it, and the deltas
    /// from there (newest first).
    /// Returns {'beyond', head} | {'missing', head, oldest checkpoint clock or ''} | {'busy', head} (more
    /// than the bounds allow: the sealer is behind) | {'ok', head, sealed, checkpoint clock, (full)
    /// checkpoint blob, {segment blobs in order}, {log entries}, {delta blobs from the checkpoint's back
    /// to the one after the full checkpoint}}.
    static let read = RedisScript(
        common + """
        local head = tonumber(redis.call('GET', clockKey) or '0')
        local clock = tonumber(ARGV[1])
        if clock > head or head == 0 then return {'beyond', fmt(head)} end
        local sealed = tonumber(redis.call('GET', sealedKey) or '-1')
        local ckClock, blob
        local deltas = {}
        if sealed < 0 then
          -- Not sealed yet: only a log that still starts at 1 holds the whole past.
          if firstLogClock() ~= 1 then return {'missing', fmt(head), ''} end
          sealed, ckClock, blob = 0, 0, '{"clock":0,"at":0,"records":{}}'
        else
          local ck = redis.call('ZREVRANGEBYSCORE', versions, clock, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
          if #ck == 0 then
            local oldest = redis.call('ZRANGE', versions, 0, 0, 'WITHSCORES')
            return {'missing', fmt(head), oldest[2] or ''}
          end
          ckClock = tonumber(ck[2])
          blob = redis.call('HGET', ckpts, fmt(ckClock))
          if not blob then
            local chain = redis.call('ZREVRANGEBYSCORE', versions, ckClock, '-inf', 'WITHSCORES', 'LIMIT', 0, maxChain)
            for j = 2, #chain, 2 do
              local at = fmt(tonumber(chain[j]))
              blob = redis.call('HGET', ckpts, at)
              if blob then break end
              local delta = redis.call('HGET', ckpts, 'd:' .. at)
              if not delta then return {'missing', fmt(head), ''} end
              deltas[#deltas + 1] = delta
            end
            if not blob then return {'missing', fmt(head), ''} end
          end
        end
        local upto = math.min(clock, sealed)
        local blobs = {}
        if upto > ckClock then
          local members = redis.call('ZRANGEBYSCORE', index, '(' .. fmt(ckClock), '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
          local lasts, reached = {}, ckClock
          for _, member in ipairs(members) do
            local first, last = string.match(member, '^(%d+):(%d+):')
            -- A segment may start before the checkpoint (it holds checkpoints inside): the commits up to
            -- it are skipped when replaying.
            if tonumber(first) > reached + 1 then return {'missing', fmt(head), ''} end
            lasts[#lasts + 1] = last
            reached = tonumber(last)
            if reached >= upto then break end
          end
          if reached < upto then
            -- Every segment after the checkpoint seen and none reaches the clock: a gap in the history
            -- (it restarted at a later head), not a sealer behind.
            if #members < tonumber(ARGV[3]) then return {'missing', fmt(head), ''} end
            return {'busy', fmt(head)}
          end
          blobs = redis.call('HMGET', segs, unpack(lasts))
          for _, b in ipairs(blobs) do if not b then return {'missing', fmt(head), ''} end end
        end
        local entries = {}
        if clock > sealed then
          local reachedLog
          entries, reachedLog = logRange(sealed + 1, clock, tonumber(ARGV[2]), tonumber(ARGV[4]))
          if not reachedLog then return {'busy', fmt(head)} end
        end
        return {'ok', fmt(head), fmt(sealed), fmt(ckClock), blob, blobs, entries, deltas}
        """)

    /// KEYS: keys(doc). ARGV: from (first clock wanted), maxSegments. The sealed segments from the one
    /// holding `from` on (at most maxSegments), for reading the log before the live log's start.
    /// Returns {head, sealed, {segment blobs}}.
    static let segments = RedisScript(
        common + """
        local head = redis.call('GET', clockKey) or '0'
        local sealed = redis.call('GET', sealedKey) or '0'
        local from = tonumber(ARGV[1])
        local blobs = {}
        if from <= tonumber(sealed) then
          local members = redis.call('ZRANGEBYSCORE', index, fmt(from), '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
          local lasts = {}
          for _, member in ipairs(members) do lasts[#lasts + 1] = string.match(member, '^%d+:(%d+):') end
          if #lasts > 0 then blobs = redis.call('HMGET', segs, unpack(lasts)) end
        end
        return {head, sealed, blobs}
        """)

    /// KEYS: keys(doc). ARGV: timeMs. The segment that holds the last commit at or before `timeMs`: the
    /// first whose latest time (monotonic) passes it, found by binary search over the index.
    /// Returns {head, sealed, first clock of that segment or '', its blob or '', the time of the oldest
    /// checkpoint or ''}.
    static let segmentAtTime = RedisScript(
        common + """
        local head = redis.call('GET', clockKey) or '0'
        local sealed = redis.call('GET', sealedKey) or ''
        local t = tonumber(ARGV[1])
        local lo, hi = 0, redis.call('ZCARD', index) - 1
        local found
        while lo <= hi do
          local mid = math.floor((lo + hi) / 2)
          local member = redis.call('ZRANGE', index, mid, mid)[1]
          local at = tonumber(string.match(member, ':(%d+)$'))
          if at > t then found = member; hi = mid - 1 else lo = mid + 1 end
        end
        local oldest = redis.call('ZRANGE', versions, 0, 0)[1] or ''
        if not found then return {head, sealed, '', '', oldest} end
        local first, last = string.match(found, '^(%d+):(%d+):')
        return {head, sealed, first, redis.call('HGET', segs, last) or '', oldest}
        """)

    /// KEYS: keys(doc). ARGV: before (clock, exclusive), limit. Returns {head, sealed or '', {version
    /// members, newest first}, {their authors JSON or false, in the same order}}.
    static let versionList = RedisScript(
        common + """
        local head = redis.call('GET', clockKey) or '0'
        local sealed = redis.call('GET', sealedKey) or ''
        local scored = redis.call('ZREVRANGEBYSCORE', versions, '(' .. ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
        local list, fields = {}, {}
        for j = 1, #scored, 2 do
          list[#list + 1] = scored[j]
          fields[#fields + 1] = 'a:' .. scored[j + 1]
        end
        local authors = {}
        if #fields > 0 then authors = redis.call('HMGET', ckpts, unpack(fields)) end
        return {head, sealed, list, authors}
        """)

    /// KEYS: keys(doc). Bytes the history holds in Redis (MEMORY USAGE of its keys, Redis's default sampling:
    /// an estimate in constant time, whatever the size) and the
    /// number of segments and checkpoints. Returns {bytes, segments, checkpoints, sealed or ''}.
    static let size = RedisScript(
        common + """
        local bytes = 0
        for k = 11, 15 do bytes = bytes + (redis.call('MEMORY', 'USAGE', KEYS[k]) or 0) end
        return {bytes, redis.call('ZCARD', index), redis.call('ZCARD', versions), redis.call('GET', sealedKey) or ''}
        """)
}
