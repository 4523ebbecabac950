%% @doc What kraken_cluster tells the operator beyond membership itself
%% (docs/cluster.md, "Runbook" and "Configuration"): pure helpers and log
%% lines, so that kraken_cluster keeps only the state.
%%
%%   - members that stopped answering (their heartbeats late, or their node
%%     down) are kept, with when they were last heard, so that
%%     `bin/kraken cluster_status' shows them `dead (Ns)' for a while
%%     instead of dropping them at the deadline (lose/2);
%%   - a seed of `cluster_nodes' (or `parents') never heard from is most
%%     often a typo: the node forms a cluster of its own, or joins the
%%     members it reached through its other seeds, and serves all the
%%     same, so it is said in the log (warn_seeds/1) and in
%%     `cluster_status';
%%   - each engine connects to the endpoint the others advertise (the
%%     address of listen_ip, or of the node's host name): a loopback one is
%%     of no use to a node on another host, and Debian maps the host name
%%     to 127.0.1.1.  When a member is first heard whose node name's host
%%     differs from this node's, and either advertises a loopback address,
%%     it is said (warn_loopback/2).
-module(kraken_cluster_ops).

-export([lose/2, warn_seeds/1, warn_loopback/2, loopback/1]).

-include_lib("kernel/include/logger.hrl").

%% @doc Adds members that stopped answering, `{Node, Info, LastHeard}', to
%% the map of those kept; one kept already keeps the first time it was
%% missed (a nodedown after the deadline changes nothing).
-spec lose([{node(), map(), integer()}], #{node() => {map(), integer()}}) ->
          #{node() => {map(), integer()}}.
lose(Members, Lost) ->
    lists:foldl(fun({N, I, H}, Acc) ->
                        case maps:is_key(N, Acc) of
                            true -> Acc;
                            false -> Acc#{N => {I, H}}
                        end
                end, Lost, Members).

%% @doc Logs the seeds never reached, if any; whether it logged.
-spec warn_seeds([node()]) -> boolean().
warn_seeds([]) ->
    false;
warn_seeds(Seeds) ->
    ?LOG_WARNING("kraken cluster: cluster_nodes ~s never reached (no heartbeat since this "
                 "node started): a typo in cluster_nodes or parents, a node not started, or a "
                 "network or cookie problem; this node goes on trying (bin/kraken "
                 "cluster_status lists them)",
                 [lists:join(" ", [atom_to_list(N) || N <- Seeds])]),
    true.

%% @doc Given this node's heartbeat info and a member's, first heard: warns
%% when the member's node name is on another host and either advertises a
%% loopback address.
-spec warn_loopback(map(), map()) -> ok.
warn_loopback(#{host := Mine}, Info = #{node := Node, host := Theirs}) ->
    [_, MyHost] = string:split(atom_to_list(node()), "@"),
    [_, Host] = string:split(atom_to_list(Node), "@"),
    case Host =/= MyHost of
        false ->
            ok;
        true ->
            loopback(Mine) andalso
                ?LOG_WARNING("kraken cluster: this node advertises the loopback address ~s "
                             "(listen_ip, or what its host name ~s resolves to: Debian maps it "
                             "to 127.0.1.1 in /etc/hosts), but ~s ~s is on host ~s: its engine "
                             "cannot reach this node there; set listen_ip to this host's "
                             "address on the cluster's network, or map the host name to it",
                             [Mine, MyHost, maps:get(role, Info), Node, Host]),
            loopback(Theirs) andalso
                ?LOG_WARNING("kraken cluster: ~s ~s on host ~s advertises the loopback address "
                             "~s: this node's engine cannot reach it there (see that node's log)",
                             [maps:get(role, Info), Node, Host, Theirs]),
            ok
    end.

%% @doc Whether an advertised address (a binary) is a loopback one.
-spec loopback(binary() | string()) -> boolean().
loopback(Host) ->
    case inet:parse_address(binary_to_list(iolist_to_binary(Host))) of
        {ok, {127, _, _, _}} -> true;
        {ok, {0, 0, 0, 0, 0, 0, 0, 1}} -> true;
        _ -> false
    end.
