import TandemRedis

/// The scripts that read a doc's sync state (layout: `GroupCommitScript`).
enum SyncReadScripts {
    /// KEYS: log. ARGV: from, count, maxBytes. Returns {truncated (0|1), entries}: raw stream entries
    /// holding clocks from `from` on — at least `count` commits if the log has them (batch entries hold
    /// several, so a plain `XRANGE … COUNT` would return either too few or far too many commits), but no
    /// more than about `maxBytes` of field values: entries stop before the one that would pass it (the
    /// first entry always comes, whatever its size), and `truncated` says the read stopped there. The
    /// first entry may start before `from`.
    ///
    /// Why bytes too: entries can be a megabyte each (a large push, a large batch), so a read by count
    /// alone could build a reply of gigabytes in Redis and in the node. Each `XRANGE` asks for about as
    /// many entries as the budget left holds at the sizes seen so far, and never more than `maxAsk`: the
    /// sizes seen so far may be small and the next entries large (a client can push tiny ops, then
    /// megabyte ones), so what one `XRANGE` materializes in the script is bounded by `maxAsk` entries
    /// (each at most about `--max-batch-bytes`, or one push), not by the estimate. Reading 5,000 small
    /// entries 16 at a time costs a few hundred `XRANGE` calls inside one script: well under a
    /// millisecond.
    static let readLog = RedisScript(
        """
        local from, want, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        local last = from + want - 1
        local out, cursor, reached, bytes, truncated = {}, string.format('%d', from) .. '-0', from - 1, 0, 0
        local maxAsk = 16
        while reached < last and truncated == 0 do
          local ask = 4
          if #out > 0 then
            -- About as many entries as the commits still wanted need, and as the budget left holds, at the
            -- sizes seen so far.
            local commitsPerEntry = math.max(reached - from + 1, 1) / #out
            ask = math.min(math.ceil((last - reached) / commitsPerEntry), math.ceil((budget - bytes) * #out / math.max(bytes, 1)))
          end
          ask = math.max(1, math.min(ask, last - reached, maxAsk))
          local got = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', ask)
          for _, entry in ipairs(got) do
            local size, fields = 0, entry[2]
            for j = 2, #fields, 2 do size = size + #fields[j] end
            if #out > 0 and bytes + size > budget then
              truncated = 1
              break
            end
            out[#out + 1] = entry
            bytes = bytes + size
            reached = math.max(reached, tonumber(string.match(entry[1], '^(%d+)')))
            cursor = '(' .. entry[1]
          end
          if #got < ask then break end
        end
        return {truncated, out}
        """)

    /// Lua: `storedSum(head)`, the doc's stored checksum `CLOCK:HEX` for the clock `head` (text), or
    /// whichever stale one it finds, or '': `~sum` in the pushids hash (where commits keep it since stop
    /// 31), else `tandem:{D}:sum` (where nodes before stop 31 kept it; a rolling upgrade may have it the
    /// newer). KEYS: GroupCommitScript.keys(doc).
    static let storedSum = """
        local function storedSum(head)
          local stored = redis.call('HGET', KEYS[6], '~sum')
          if stored and string.match(stored, '^(%d+):') == head then return stored end
          return redis.call('GET', KEYS[10]) or stored or ''
        end

        """

    /// KEYS: GroupCommitScript.keys(doc). ARGV: docTTLMs. Returns {head, records (flat id/json), versions
    /// (flat id/clock), tombstones (flat id/clock), first retained log clock or '', legacy re-push record
    /// exists (1|0), the stored checksum `CLOCK:HEX` or '' (`storedSum`)}: a consistent snapshot of the doc. The first clock of a batch entry is its id − n + 1.
    /// Keeps the doc alive (the node now holds it open; see `GroupCommitScript.keepAlive`).
    static let load = RedisScript(
        GroupCommitScript.keepAlive + storedSum + """
        keepAlive(tonumber(ARGV[1]))
        local head = redis.call('GET', KEYS[1]) or '0'
        local first = redis.call('XRANGE', KEYS[5], '-', '+', 'COUNT', 1)
        local firstClock = ''
        if #first > 0 then
          local n, fields = 1, first[1][2]
          for j = 1, #fields, 2 do if fields[j] == 'n' then n = tonumber(fields[j + 1]) end end
          firstClock = string.format('%d', tonumber(string.match(first[1][1], '^(%d+)')) - n + 1)
        end
        return {head, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
                redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), firstClock, redis.call('EXISTS', KEYS[8]),
                storedSum(head)}
        """)

    /// KEYS: GroupCommitScript.keys(doc). ARGV: docTTLMs. Returns the head clock ('0' for a doc without
    /// commits) and keeps the doc alive: nodes run this periodically for every doc they hold open.
    static let head = RedisScript(
        GroupCommitScript.keepAlive + """
        keepAlive(tonumber(ARGV[1]))
        return redis.call('GET', KEYS[1]) or '0'
        """)

    /// KEYS: GroupCommitScript.keys(doc). Returns {head, stored checksum `CLOCK:HEX` or '' (`storedSum`)}:
    /// what the periodic checksum comparison reads (issue 13; nothing written).
    static let sum = RedisScript(
        storedSum + """
        local head = redis.call('GET', KEYS[1]) or '0'
        return {head, storedSum(head)}
        """)

    /// KEYS: GroupCommitScript.keys(doc). ARGV: head, checksum (16 hex digits), replace (1|0). Stores
    /// `head:checksum` as the doc's checksum (`~sum` in the pushids hash, where commits read it) if the
    /// head is still `head` and — unless `replace` — the stored one does not describe that head (missing,
    /// or left behind by a node from before checksums, or by one from before stop 31: it keeps it in
    /// `tandem:{D}:sum`). With `replace`, a node that read Redis's records and found they do not add up
    /// to Redis's checksum makes the checksum describe the records (they are the data; the checksum only
    /// says whether a copy of them is faithful) — in `tandem:{D}:sum` too if it exists, so nodes from before
    /// stop 31 do not carry the old one on. A key created gets the clock's deadline (every key of a doc
    /// expires together). Returns 1 when it stored it.
    static let seedSum = RedisScript(
        """
        local head = redis.call('GET', KEYS[1])
        if head ~= ARGV[1] then return 0 end
        local stored = redis.call('HGET', KEYS[6], '~sum') or ''
        if ARGV[3] ~= '1' and string.match(stored, '^(%d+):') == head then return 0 end
        local value = head .. ':' .. ARGV[2]
        redis.call('HSET', KEYS[6], '~sum', value)
        if ARGV[3] == '1' and redis.call('EXISTS', KEYS[10]) == 1 then redis.call('SET', KEYS[10], value, 'KEEPTTL') end
        if redis.call('PTTL', KEYS[6]) == -1 then
          local deadline = redis.call('PEXPIRETIME', KEYS[1])
          if deadline > 0 then redis.call('PEXPIREAT', KEYS[6], deadline) end
        end
        return 1
        """)
}
