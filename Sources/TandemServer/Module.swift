// Module TandemServer.
