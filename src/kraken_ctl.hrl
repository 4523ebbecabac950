%% What kraken_ctl and kraken_ctl_node share: how long a call to the
%% server node may take.
-define(RPC_TIMEOUT, 30000).
