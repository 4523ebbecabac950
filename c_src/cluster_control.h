/* cluster_control.h - the cluster's requests on the control channel
 * (docs/engine-protocol.md, docs/cluster.md), decoded and answered here so
 * that control_call.c only dispatches to them. */
#ifndef KRAKEN_CLUSTER_CONTROL_H
#define KRAKEN_CLUSTER_CONTROL_H

#include <ei.h>

struct server;

/* {Tag, Arg} requests: `cluster`, `cluster_owner`.  Returns 1 when it
 * answered into x (buf at Arg), 0 when Tag is not one of them. */
int cluster_control_tuple(struct server *srv, const char *tag, const char *buf, int *idx,
                          ei_x_buff *x);
/* Atom requests: `cluster_status`.  Returns 1 when it answered into x. */
int cluster_control_atom(struct server *srv, const char *atom, ei_x_buff *x);

#endif
