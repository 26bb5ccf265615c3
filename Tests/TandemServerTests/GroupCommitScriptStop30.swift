@testable import TandemServer
import TandemRedis

/// The group-commit script as nodes of stop 30 (main at c51fe9f) run it, verbatim: the checksum in
/// `tandem:{D}:sum` (GET + SET per commit), where stop 31 keeps it in the pushids hash (`~sum`). For the
/// rolling-upgrade tests (`GroupCommitScriptTests`): a doc committed by both forms in turn.
enum GroupCommitScriptStop30 {
    static let commit = RedisScript(commitPrologue + commitBody)

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
        local fields, sessions, counterAt
        if n == 1 then
          fields = {sid1 .. '=' .. pid1, sid1, nil}
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
        local sums = n == 1 and {nil} or {nil, nil, nil, nil}
        -- Unknown (a stale delta, or no stored sum for the clock before): no sums, and the stored one stays
        -- tagged with an older clock, so it is stale until a node seeds it again (SyncReadScripts.seedSum).
        if ARGV[i + n - 1] and not sumStale then
          local lane0, lane1, sumKey = nil, nil, prefix .. 'sum'
          if first == 1 then
            lane0, lane1 = 0, 0
          else
            -- `CLOCK:HEX16`, read without a pattern: its clock must be first - 1.
            local stored = rcall('GET', sumKey)
            if stored and sub(stored, -17, -17) == ':' and tonumber(sub(stored, 1, -18)) == first - 1 then
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
            rcall('SET', sumKey, lastText .. ':' .. sums[n], 'KEEPTTL')
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
            rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1), '~tail', token .. '@' .. firstText)
          else
            rcall('HSET', pushids, slot, pid, fields[1], firstText, sid, format('%d', before + 1))
          end
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

    /// Stop 30's `SyncReadScripts.seedSum`: the checksum in `tandem:{D}:sum`.
    static let seedSum = RedisScript(
        """
        local head = redis.call('GET', KEYS[1])
        if head ~= ARGV[1] then return 0 end
        local stored = redis.call('GET', KEYS[10]) or ''
        if ARGV[3] ~= '1' and string.match(stored, '^(%d+):') == head then return 0 end
        redis.call('SET', KEYS[10], head .. ':' .. ARGV[2])
        local deadline = redis.call('PEXPIRETIME', KEYS[1])
        if deadline > 0 then redis.call('PEXPIREAT', KEYS[10], deadline) end
        return 1
        """)
}
