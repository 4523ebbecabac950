%% @doc Whether this node's engine answers, as kraken_cluster sees it
%% (docs/cluster.md, "Failures": a hung engine under a live VM).
%%
%% kraken_cluster asks the engine every tick (ask/2), from a helper process
%% (a hung engine must not block it), one question at a time; the helper's
%% answer comes back as `{engine_health, Pid, Reply}' (answer/4). An engine
%% that gave no `pong' for ?ENGINE_DEADLINE ms is hung (check/2): the node
%% sends no heartbeat until it answers again, so the others stop counting it
%% live and move its topics. The question is `cluster_fresh', which also
%% confirms the engine's view of the cluster (cluster_fresh.c), except just
%% after this node resumed from a stop (resume/4), until it heard the
%% others again: then `ping'. An engine of a release before `cluster_fresh'
%% (engine_executable) answers badarg: asked `ping' then.
%%
%% It also notices a restarted engine (restarted/1): that one knows nothing
%% of the cluster, and kraken_cluster tells it again.
-module(kraken_cluster_health).

-export([new/1, restarted/1, ask/2, answer/4, exited/2, resume/4, check/2, hung/1]).
-export_type([health/0]).

-include_lib("kernel/include/logger.hrl").
-include("kraken_cluster.hrl").

-define(ENGINE_DEADLINE, 1000).

-record(health, {engine :: pid() | undefined,          % the engine last seen
                 ok_at :: integer(),                    % its last `pong'
                 checker :: pid() | undefined,          % the helper asking it
                 hung = false :: boolean(),
                 resumed_until :: integer()}).          % no confirmation before (resume)

-opaque health() :: #health{}.

%% @doc At the start (Now, ms): the engine counts as having answered.
-spec new(integer()) -> health().
new(Now) ->
    #health{ok_at = Now, resumed_until = Now}.

%% @doc `{true, Health}' when the engine is another process than the one
%% last seen (it was restarted), else false.
-spec restarted(health()) -> {true, health()} | false.
restarted(H = #health{engine = Old}) ->
    case whereis(kraken_engine) of
        Old -> false;
        New -> {true, H#health{engine = New}}
    end.

%% @doc Asks the engine for a `pong' from a helper linked to the caller,
%% unless one still waits for its answer.
-spec ask(health(), integer()) -> health().
ask(H = #health{checker = undefined, resumed_until = Until}, Now) ->
    Self = self(),
    Ask = case Now >= Until of
              true -> cluster_fresh;
              false -> ping
          end,
    Pid = spawn_link(fun() ->
                             R = case catch kraken_engine:call(Ask, ?ENGINE_DEADLINE) of
                                     {error, badarg} ->
                                         catch kraken_engine:call(ping, ?ENGINE_DEADLINE);
                                     Other ->
                                         Other
                                 end,
                             Self ! {engine_health, self(), R}
                     end),
    H#health{checker = Pid};
ask(H, _Now) ->
    H.

%% @doc The helper Pid's answer `{engine_health, Pid, Reply}' came at Now
%% (one from another helper than the current one changes nothing).
-spec answer(health(), pid(), term(), integer()) -> health().
answer(H = #health{checker = Pid}, Pid, pong, Now) ->
    H#health{checker = undefined, ok_at = Now};
answer(H = #health{checker = Pid}, Pid, _Reply, _Now) ->
    H#health{checker = undefined};
answer(H, _Pid, _Reply, _Now) ->
    H.

%% @doc A linked process Pid exited: if it was the helper (it failed before
%% answering), another one may ask.
-spec exited(health(), pid()) -> health().
exited(H = #health{checker = Pid}, Pid) ->
    H#health{checker = undefined};
exited(H, _Pid) ->
    H.

%% @doc This node did not run for Gap ms until Now (it was stopped): the
%% engine is not counted hung for the gap. After a gap so long that its
%% engine counts its view stale (after 1500 ms without a confirmation,
%% cluster_fresh.c), it confirms none before Until (once the others were
%% heard again); whether so.
-spec resume(health(), integer(), integer(), integer()) -> {boolean(), health()}.
resume(H = #health{ok_at = OkAt}, Gap, Now, Until) ->
    Stale = Gap > ?DEADLINE - 2 * ?TICK,
    {Stale, H#health{ok_at = min(Now, OkAt + Gap),
                     resumed_until = case Stale of
                                         true -> Until;
                                         false -> H#health.resumed_until
                                     end}}.

%% @doc Whether the engine is hung at Now, said in the log when that changes.
-spec check(health(), integer()) -> health().
check(H = #health{ok_at = OkAt, hung = Was}, Now) ->
    Hung = Now - OkAt > ?ENGINE_DEADLINE,
    case {Hung, Was} of
        {true, false} ->
            ?LOG_WARNING("kraken cluster: the engine did not answer for ~b ms; not live "
                         "until it does", [Now - OkAt]);
        {false, true} ->
            ?LOG_WARNING("kraken cluster: the engine answers again; live again");
        _ ->
            ok
    end,
    H#health{hung = Hung}.

%% @doc Whether the engine was hung at the last check/2.
-spec hung(health()) -> boolean().
hung(#health{hung = Hung}) ->
    Hung.
