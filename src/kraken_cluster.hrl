%% The cluster's timing, shared by kraken_cluster (which ticks) and the
%% modules that decide from it who is live (kraken_cluster_live) and what
%% the operator is shown (kraken_cluster_ops); docs/cluster.md,
%% "Membership and failure detection".

%% Every ?TICK ms a member sends its heartbeat to every other.
-define(TICK, 200).
%% A member not heard from for ?DEADLINE ms is not live.
-define(DEADLINE, 1600).
