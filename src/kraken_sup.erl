%% @doc The top supervisor of the kraken application. It supervises the
%% engine owner (kraken_engine) one_for_one; the restart intensity lets a
%% crashed or killed engine be restarted at once, up to 10 times in 10 s.
-module(kraken_sup).
-behaviour(supervisor).

-export([start_link/1]).
-export([init/1]).

%% @doc Starts the supervisor with a configuration validated by kraken_config.
-spec start_link([kraken_config:option()]) -> {ok, pid()} | {error, term()}.
start_link(Config) ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, Config).

%% @doc Supervisor callback: one permanent child, the engine owner.
init(Config) ->
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
