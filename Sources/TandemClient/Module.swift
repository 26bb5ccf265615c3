// Module TandemClient.
