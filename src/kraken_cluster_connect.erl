%% @doc How kraken_cluster reaches the other members (docs/cluster.md,
%% "Membership and failure detection"), and what it says of those it cannot.
%%
%% On every tick (tick/2) it connects to the seeds (`cluster_nodes' and
%% `parents': any one member is enough, distribution connects the rest)
%% and to every node it ever heard a heartbeat from (heard/2) that is not
%% connected: after a partition between two members that both still reach
%% a third, nothing else would connect them again (distribution meshes
%% only when a node comes up). Each attempt runs in a helper process of
%% its own, linked to kraken_cluster (an attempt to an unreachable host
%% can take seconds; its exit is passed to exited/2), one at a time per
%% node.
%%
%% A node never heard from that refuses the connection while epmd on its
%% host lists it (most likely a different Erlang cookie) is said in the log
%% and in unreached_seeds/1, and tried every ?REFUSED_RETRY ms instead of
%% every tick: each attempt makes that node log an error (`Connection
%% attempt from node ... rejected'), five a second otherwise. The helper
%% tells kraken_cluster `{refused, Node}' (refused/3), or `{not_running,
%% Node}' once epmd no longer lists a node that refused (not_running/2).
%%
%% A seed never heard from (a typo forms a cluster of its own silently
%% otherwise) is listed by unreached_seeds/1 (`bin/kraken cluster_status')
%% and warned about (kraken_cluster_ops:warn_seeds/1) ?SEED_WARN_FIRST ms
%% after the start, then every ?SEED_WARN_EVERY ms.
-module(kraken_cluster_connect).

-export([new/2, tick/2, heard/2, refused/3, not_running/2, exited/2, unreached_seeds/1]).
-export_type([connect/0]).

-include_lib("kernel/include/logger.hrl").

%% A seed (`cluster_nodes', `parents') never heard from is warned about this
%% long after the start, then every ?SEED_WARN_EVERY.
-define(SEED_WARN_FIRST, 10000).
-define(SEED_WARN_EVERY, 60000).
%% A node never heard from that refused the connection is tried this often.
-define(REFUSED_RETRY, 5000).

-record(connect, {nodes :: [node()],                       % the seeds
                  connectors = #{} :: #{pid() => node()},
                  refused = #{} :: #{node() => integer()},  % never heard, refused: next try
                  known = #{} :: #{node() => true},         % every node heard from
                  seed_warn_at :: integer()}).      % when to warn next about seeds never heard
-opaque connect() :: #connect{}.

%% @doc The seeds to reach, at Now (ms, monotonic).
-spec new([node()], integer()) -> connect().
new(Nodes, Now) ->
    #connect{nodes = Nodes, seed_warn_at = Now + ?SEED_WARN_FIRST}.

%% @doc A tick: tries the nodes not connected, warns about seeds never heard.
-spec tick(connect(), integer()) -> connect().
tick(S, Now) ->
    warn_seeds(connect(S, Now), Now).

%% @doc A heartbeat came from Node: it is known, tried every tick when lost.
-spec heard(connect(), node()) -> connect().
heard(S = #connect{known = Known, refused = Refused}, Node) ->
    S#connect{known = Known#{Node => true}, refused = maps:remove(Node, Refused)}.

%% @doc Node refused the connection though epmd lists it.
-spec refused(connect(), node(), integer()) -> connect().
refused(S = #connect{known = Known, refused = Refused}, Node, Now) ->
    case maps:is_key(Node, Known) of
        true ->
            S;
        false ->
            maps:is_key(Node, Refused) orelse
                ?LOG_WARNING("kraken cluster: node ~s refused this node's connection, though "
                             "it runs (epmd on its host lists it): most likely a different "
                             "Erlang cookie (~~/.erlang.cookie, or -setcookie, must be the same "
                             "on every member); trying again every ~b s",
                             [Node, ?REFUSED_RETRY div 1000]),
            S#connect{refused = Refused#{Node => Now + ?REFUSED_RETRY}}
    end.

%% @doc A node that refused is no longer listed by epmd: it stopped (maybe
%% to be started with the right cookie); no longer said to run, tried every
%% tick.
-spec not_running(connect(), node()) -> connect().
not_running(S = #connect{refused = Refused}, Node) ->
    S#connect{refused = maps:remove(Node, Refused)}.

%% @doc A linked process exited (a connection attempt, or another helper).
-spec exited(connect(), pid()) -> connect().
exited(S = #connect{connectors = C}, Pid) ->
    S#connect{connectors = maps:remove(Pid, C)}.

%% @doc The seeds never heard from since the start; `{Node, refused}' for
%% one that runs (epmd lists it) but refused the connection.
-spec unreached_seeds(connect()) -> [node() | {node(), refused}].
unreached_seeds(S = #connect{refused = Refused}) ->
    [case maps:is_key(N, Refused) of
         true -> {N, refused};
         false -> N
     end || N <- unreached(S)].

%%% Internal functions

%% The seeds (cluster_nodes, parents) never heard from since the start.
unreached(#connect{nodes = Nodes, known = Known}) ->
    [N || N <- Nodes, not maps:is_key(N, Known)].

warn_seeds(S = #connect{seed_warn_at = At}, Now) ->
    case Now >= At andalso kraken_cluster_ops:warn_seeds(unreached(S)) of
        true -> S#connect{seed_warn_at = Now + ?SEED_WARN_EVERY};
        false -> S
    end.

%% Connects to the configured nodes and the members ever heard from that are
%% not connected, each from a helper process of its own (an attempt to an
%% unreachable host can take seconds), one attempt at a time per node; a
%% node never heard from that refused (refused/3) only every
%% ?REFUSED_RETRY ms, until it is heard or epmd no longer lists it
%% (not_running/2).
connect(S = #connect{nodes = Nodes, known = Known, connectors = C, refused = Refused}, Now) ->
    Busy = maps:values(C),
    Missing = [N || N <- lists:usort(Nodes ++ maps:keys(Known)), N =/= node(),
                    not lists:member(N, Busy), not lists:member(N, nodes()),
                    maps:get(N, Refused, Now) =< Now],
    Self = self(),
    Try = fun(N) ->
                  WasRefused = maps:is_key(N, Refused),
                  fun() ->
                          case net_kernel:connect_node(N) orelse maps:is_key(N, Known) of
                              true -> ok;
                              false ->
                                  case registered(N) of
                                      true -> Self ! {refused, N};
                                      false when WasRefused -> Self ! {not_running, N};
                                      false -> ok
                                  end
                          end
                  end
          end,
    S#connect{connectors = lists:foldl(fun(N, Acc) -> Acc#{spawn_link(Try(N)) => N} end,
                                     C, Missing)}.

%% Whether epmd on the host of Node lists its name (it runs).
registered(Node) ->
    case string:split(atom_to_list(Node), "@") of
        [Name, Host] ->
            case catch erl_epmd:names(Host) of
                {ok, Names} when is_list(Names) -> lists:keymember(Name, 1, Names);
                _ -> false
            end;
        _ ->
            false
    end.

