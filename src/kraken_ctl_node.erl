%% @doc The server node as bin/kraken's temporary node sees it
%% (kraken_ctl): whether it answers, and when not why (down/1: not running,
%% or running with another Erlang cookie, which epmd on its host tells);
%% `bin/kraken start' waiting for it to run the application
%% (wait_started/3, its configuration warnings printed on the terminal);
%% `bin/kraken run' refusing a node name already taken (check_free/1);
%% `bin/kraken stop' stopping it and waiting until it is gone (stop/1).
%% Each returns `{ExitStatus, Text}' (or `{ExitStatus, Text, Stderr}'), as
%% kraken_ctl's commands do.
-module(kraken_ctl_node).

-export([ping/1, down/1, wait_started/3, check_free/1, stop/1]).

-include("kraken_ctl.hrl").

%% Stops the node (kraken:stop_node/0) and waits until it is gone.
stop(Node) ->
    case ping(Node) of
        false ->
            {1, down(Node)};
        true ->
            _ = rpc:call(Node, kraken, stop_node, [], ?RPC_TIMEOUT),
            wait_down(Node, erlang:monotonic_time(millisecond) + 60000)
    end.

%% Used by `bin/kraken start': waits until the new node (OS process OsPid)
%% runs the application, or that process is gone (e.g. when the node name is
%% already taken by a running node).
wait_started(Node, OsPid, Deadline) ->
    Status = case ping(Node) of
                 true -> rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT);
                 false -> down
             end,
    Ours = case Status of
               {running, I} -> proplists:get_value(os_pid, I) =:= OsPid;
               _ -> false
           end,
    case Status of
        {running, Info} when Ours ->
            %% The configuration warnings go to the terminal, not only to
            %% the log.
            Warnings = case rpc:call(Node, kraken, start_warnings, [], ?RPC_TIMEOUT) of
                           W when is_list(W) -> W;
                           _ -> []
                       end,
            {0, io_lib:format("kraken started on node ~s, listening on port ~b "
                              "(os pid ~s)~n",
                              [Node, proplists:get_value(port, Info),
                               proplists:get_value(os_pid, Info)]),
             [[W, $\n] || W <- Warnings]};
        {running, Info} ->
            case kraken_engine:os_process_alive(OsPid) of
                false ->
                    {1, already_running(Node, proplists:get_value(os_pid, Info))};
                true ->
                    retry_started(Node, OsPid, Deadline)
            end;
        _ ->
            case kraken_engine:os_process_alive(OsPid) of
                false ->
                    {1, io_lib:format("kraken: node ~s failed to start~n", [Node])};
                true ->
                    retry_started(Node, OsPid, Deadline)
            end
    end.

%% Used by `bin/kraken run' when the node name is taken in epmd: refuses
%% with the line `start' gives, rather than erl's own complaint.
check_free(Node) ->
    case ping(Node) of
        true ->
            OsPid = case rpc:call(Node, os, getpid, [], ?RPC_TIMEOUT) of
                        P when is_list(P) -> P;
                        _ -> undefined
                    end,
            case rpc:call(Node, kraken, status, [], ?RPC_TIMEOUT) of
                not_running ->
                    {1, io_lib:format("kraken: node ~s is up (os pid ~s) but the kraken "
                                      "application is not running; start it there with "
                                      "kraken:start(), or bin/kraken stop the node first~n",
                                      [Node, OsPid])};
                _ ->
                    {1, already_running(Node, OsPid)}
            end;
        false ->
            [Name, Host] = string:split(atom_to_list(Node), "@"),
            case catch erl_epmd:names(Host) of
                {ok, Names} when is_list(Names) ->
                    case lists:keymember(Name, 1, Names) of
                        true ->
                            {1, io_lib:format("kraken: the node name ~s is in use by "
                                              "another Erlang node~n", [Node])};
                        false ->
                            {0, ""}
                    end;
                _ ->
                    {0, ""}
            end
    end.

already_running(Node, undefined) ->
    io_lib:format("kraken: node ~s is already running~n", [Node]);
already_running(Node, OsPid) ->
    io_lib:format("kraken: node ~s is already running (os pid ~s)~n", [Node, OsPid]).

retry_started(Node, OsPid, Deadline) ->
    case erlang:monotonic_time(millisecond) > Deadline of
        true ->
            {1, io_lib:format("kraken: node ~s did not start the application in time~n",
                              [Node])};
        false ->
            timer:sleep(50),
            wait_started(Node, OsPid, Deadline)
    end.

wait_down(Node, Deadline) ->
    case ping(Node) of
        false ->
            {0, io_lib:format("kraken stopped (node ~s)~n", [Node])};
        true ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true ->
                    {3, io_lib:format("kraken: node ~s did not stop in time~n",
                                      [Node])};
                false ->
                    timer:sleep(100),
                    wait_down(Node, Deadline)
            end
    end.

ping(Node) ->
    net_adm:ping(Node) =:= pong.

%% The node does not answer: not running, or (epmd on its host lists the
%% name) running with another Erlang cookie, which is then said, since
%% "not running" would send the operator looking in the wrong place.
down(Node) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    case catch erl_epmd:names(Host) of
        {ok, Names} when is_list(Names) ->
            case lists:keymember(Name, 1, Names) of
                true ->
                    io_lib:format("kraken: node ~s does not answer: epmd on ~s lists it, but "
                                  "it refused this command's connection (a different Erlang "
                                  "cookie? run the command as the node's user, or give it the "
                                  "node's -setcookie)~n", [Node, Host]);
                false ->
                    io_lib:format("kraken: node ~s is not running~n", [Node])
            end;
        _ ->
            io_lib:format("kraken: node ~s is not running~n", [Node])
    end.

