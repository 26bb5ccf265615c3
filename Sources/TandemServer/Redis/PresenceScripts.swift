import TandemRedis

/// The Lua scripts behind presence. Each runs atomically in Redis; all keys of one doc share the hash tag
/// `{D}`, so in Redis Cluster they live in one slot.
///
/// Keys of doc D:
/// - `tandem:{D}:presence:NODE` — hash `sid → ENTRY` of the sessions NODE serves in D. PEXPIREd to the
///   presence TTL on every write and refresh: if NODE dies, Redis itself drops its sessions after the TTL.
/// - `tandem:{D}:nodes` — sorted set `NODE → deadline (ms, Redis clock)`: which nodes serve D and until
///   when. The sweep turns passed deadlines into a `nodesGone` message so every node reports those
///   sessions in `left` (a key expiry alone would tell nobody).
/// Channel `tandem:{D}` carries node messages; it is published from inside the scripts so every node sees
/// changes in exactly the order Redis applied them.
///
/// The snapshot and sweep scripts read `tandem:{D}:presence:NODE` keys they discover in the sorted set;
/// these are not in KEYS, but share the `{D}` tag, so they are in the script's slot (allowed in Cluster).
/// Every command inside a script counts in Redis's command rate, so writes batch: one HSET and one
/// PEXPIRE per doc per tick, the sorted set only on refresh (every TTL/4).
enum PresenceScripts {
    /// KEYS: node hash, nodes zset. ARGV: node, ttlMs, full(0|1), refresh(0|1), channel, payload,
    /// upsertCount, then upsertCount (sid, entry) pairs, then sids to delete. Publishes whenever there is
    /// a payload (Yjs awareness, whose nodes hear each other's writes as a heartbeat).
    static let write = RedisScript(writeSource(listenerArgument: false))

    /// A doc's presence write: `write` with two more arguments after upsertCount's place, ARGV[8] = the
    /// subscribers of the channel that are this node (1 while its subscription is confirmed, else 0; −1:
    /// publish whatever the count), ARGV[9] = the payload's tail, the entries from ARGV[10]. With an empty
    /// tail ARGV[6] is the whole payload; otherwise the payload is ARGV[6] (its head), the entries written
    /// to the hash joined by commas, and the tail: the message lists the same entries as the hash write, and
    /// sending them once instead of twice halves the bytes of a write (~10 KB of ~20 KB per write of 50
    /// states at 2,000 clients / 40 docs), which a lone node never publishes (issue 14). The payload is
    /// published only if someone
    /// else listens on the channel (`PUBSUB NUMSUB` above that figure): a node alone on a doc heard its
    /// own every delta back through Redis, ~8 MB/s at 2,000 clients / 40 docs (issue 14). Exact under
    /// races because the count is read in the script, atomically with the hash write it announces: a node
    /// that subscribes before this script runs is counted (and hears the message); one that subscribes
    /// after it reads the entries from the hash with its first snapshot, as it always did (a SUBSCRIBE
    /// confirmed during that read makes the joiner reconcile at once, `DocShard.channelResubscribed`).
    /// Returns 1 if it published (or had nothing to publish), 0 if it skipped the publish.
    static let docWrite = RedisScript(writeSource(listenerArgument: true))

    /// The write script's source; with `listenerArgument`, the publish is skipped while nobody else
    /// listens (see `docWrite`). One source for both, so their writes cannot drift apart.
    ///
    /// Its effects go to replicas but not to the append-only file (`redis.set_repl(redis.REPL_REPLICA)`):
    /// presence lives for `--presence-ttl-ms` (2 s) after its last write, so a Redis that restarts from its
    /// AOF has nothing of it worth loading, and every node rewrites all its sessions once Redis is back
    /// anyway (`DocShard.redisRecovered`, `PresenceDoc.reconcile`). The AOF copy of each write (its HSET of
    /// every changed state, ~10 KB per write at 2,000 clients / 40 docs, fed to the AOF buffer and written
    /// to disk) was about a quarter of Redis's CPU per presence write, the one CPU the bare fan-out server
    /// does not spend (issue 14). Replicas still get every effect, so a promoted replica holds the presence
    /// its primary held.
    static func writeSource(listenerArgument: Bool) -> String {
        let first = listenerArgument ? 10 : 8
        let publish =
            listenerArgument
            ? """
            if ARGV[6] ~= '' then
              local own = tonumber(ARGV[8])
              if own >= 0 and redis.call('PUBSUB', 'NUMSUB', ARGV[5])[2] <= own then return 0 end
              local payload = ARGV[6]
              if ARGV[9] ~= '' then
                local entries = {}
                for k = 1, n do entries[k] = ARGV[\(first) + 2 * k - 1] end
                payload = ARGV[6] .. table.concat(entries, ',') .. ARGV[9]
              end
              redis.call('PUBLISH', ARGV[5], payload)
            end
            return 1
            """
            : """
            if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
            return 1
            """
        return """
        redis.set_repl(redis.REPL_REPLICA)
        local node, ttl = ARGV[1], tonumber(ARGV[2])
        local full, refresh = ARGV[3] == '1', ARGV[4] == '1'
        local n = tonumber(ARGV[7])
        if full then redis.call('DEL', KEYS[1]) end
        local last = \(first - 1) + 2 * n
        local i = \(first)
        while i <= last do
          local batch = {}
          while i <= last and #batch < 1000 do
            batch[#batch + 1] = ARGV[i]; batch[#batch + 1] = ARGV[i + 1]; i = i + 2
          end
          redis.call('HSET', KEYS[1], unpack(batch))
        end
        local dels = {}
        for k = last + 1, #ARGV do
          dels[#dels + 1] = ARGV[k]
          if #dels == 1000 then redis.call('HDEL', KEYS[1], unpack(dels)); dels = {} end
        end
        if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
        if redis.call('PEXPIRE', KEYS[1], ttl) == 1 then
          if refresh or full then
            local t = redis.call('TIME')
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            redis.call('ZADD', KEYS[2], now + ttl, node)
            -- The set lives until its latest deadline, not this writer's: nodes may run with different
            -- --presence-ttl-ms (a rolling change), and a short one must not expire a long one's entry.
            local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
            redis.call('PEXPIREAT', KEYS[2], tonumber(last[2]))
          end
        else
          redis.call('ZREM', KEYS[2], node)
        end
        \(publish)
        """
    }

    /// KEYS: nodes zset. ARGV: presence key prefix (`tandem:{D}:presence:`).
    /// Returns every entry of every node whose deadline has not passed.
    static let snapshot = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local out = {}
        for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
          for _, entry in ipairs(redis.call('HVALS', ARGV[1] .. node)) do out[#out + 1] = entry end
        end
        return out
        """)

    /// KEYS: nodes zset. ARGV: presence key prefix, channel.
    /// Removes nodes whose deadline passed, deletes their hashes, publishes `{"k":"g","gone":[…]}` and
    /// returns their names. Node ids are restricted to [A-Za-z0-9._:-], so they need no JSON escaping.
    static let sweep = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
        if #gone == 0 then return gone end
        redis.call('ZREM', KEYS[1], unpack(gone))
        local names = {}
        for i, node in ipairs(gone) do
          redis.call('DEL', ARGV[1] .. node)
          names[i] = '"' .. node .. '"'
        end
        redis.call('PUBLISH', ARGV[2], '{"k":"g","gone":[' .. table.concat(names, ',') .. ']}')
        return gone
        """)
}

