// Module TandemRedis.
