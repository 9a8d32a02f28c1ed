/*
 * include/edumig/cli.h — subcommand dispatch and options. Only the CLI ends the process.
 */
#ifndef EDUMIG_CLI_H
#define EDUMIG_CLI_H

int cli_main(int argc, char **argv);

/* Overwrites the password of a conninfo string or URI in place with '*' (so `ps` shows no
 * secret); returns true when it found one. */
#include <stdbool.h>
bool cli_scrub_password(char *conninfo);

#endif /* EDUMIG_CLI_H */
