/* SPDX-License-Identifier: MIT */
/*
 * ctl_commands.h — forkpoolctl's commands beyond status: admin commands sent
 * to the supervisor (dispose, pause, resume, reload, kill-lease), the event
 * ring (events), and url-check. Each takes the command's own argv (argv[0] is
 * the command) and returns forkpoolctl's exit status: 0 success, 1 failure
 * (said in one line on stderr), 2 usage error.
 */
#ifndef FORKPOOL_CTL_COMMANDS_H
#define FORKPOOL_CTL_COMMANDS_H

/* dispose POOL | pause POOL | resume POOL | reload | kill-lease POOL SLOT */
int ctl_cmd_admin(int argc, char *argv[], const char *socket_path);

/* events [--follow] [--json] [--last N] */
int ctl_cmd_events(int argc, char *argv[], const char *socket_path);

/* url-check URL: how a URL is understood, password masked. */
int ctl_cmd_url_check(int argc, char *argv[]);

/* True if name is one of the commands above. */
int ctl_is_extra_command(const char *name);

#endif /* FORKPOOL_CTL_COMMANDS_H */
