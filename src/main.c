/*
 * src/main.c — entry point: hands the command line to the CLI and returns its exit code.
 */
#include "edumig/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
