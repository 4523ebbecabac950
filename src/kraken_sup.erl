%% @doc The top supervisor of the kraken application. It supervises the
%% engine owner (kraken_engine) one_for_one; the restart intensity lets a
%% crashed or killed engine be restarted at once, up to 10 times in 10 s.
%%
%% It also owns the count of engine restarts since the application started
%% (a public ETS counter, so it outlives each kraken_engine process and
%% starts again at 0 with the application): the engine's own counters (its
%% `stats') start at 0 with each new engine, this one does not.
-module(kraken_sup).
-behaviour(supervisor).

-export([start_link/1, count_engine_restart/0, engine_restarts/0]).
-export([init/1]).

-define(TABLE, kraken_sup_counters).

%% @doc Starts the supervisor with a configuration validated by kraken_config.
-spec start_link([kraken_config:option()]) -> {ok, pid()} | {error, term()}.
start_link(Config) ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, Config).

%% @doc Counts one more engine restart (its exit, after which this
%% supervisor starts a new one); returns the count.
-spec count_engine_restart() -> pos_integer().
count_engine_restart() ->
    ets:update_counter(?TABLE, engine_restarts, 1, {engine_restarts, 0}).

%% @doc Engine restarts since the application started (0 when it is not
%% running).
-spec engine_restarts() -> non_neg_integer().
engine_restarts() ->
    try ets:lookup(?TABLE, engine_restarts) of
        [{_, N}] -> N;
        [] -> 0
    catch
        error:badarg -> 0
    end.

%% @doc Supervisor callback: one permanent child, the engine owner.
init(Config) ->
    %% Owned by this process: it lives as long as the application.
    ?TABLE = ets:new(?TABLE, [named_table, public, set]),
    Flags = #{strategy => one_for_one, intensity => 10, period => 10},
    Engine = #{id => kraken_engine,
               start => {kraken_engine, start_link, [Config]},
               restart => permanent,
               shutdown => 5000,
               type => worker,
               modules => [kraken_engine]},
    %% In a cluster (role proxy, or cluster_nodes set), membership after the
    %% engine: kraken_cluster tells it the live cores.
    {ok, {Flags, [Engine | kraken_cluster:child_specs(Config)]}}.
