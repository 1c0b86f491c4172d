/*
 * carvectl - the command-line client of carvefs' control socket.
 *
 * A thin client: it checks what it can locally (names, quantities, flag
 * combinations) so that typing mistakes fail fast with the daemon's own
 * wording, builds one request (include/wire.h), prints the reply as a table
 * or as JSON, and turns the outcome into an exit status:
 *
 *	0 success, 1 the daemon refused or failed, 2 usage error,
 *	3 the daemon cannot be reached.
 *
 * Every failure is one line on stderr, "carvectl: <message>", so scripts
 * can show it as is.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctlclient.h"
#include "duration.h"
#include "quantity.h"
#include "volname.h"
#include "wire.h"

#ifndef CARVEFS_VERSION
#define CARVEFS_VERSION "0.1.0"
#endif

#define EXIT_DAEMON 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
/* Not an exit status: help was printed, end successfully without a request. */
#define STATUS_HELP 256

/* Deleting or wiping a large volume walks all of it: be patient by default. */
#define DEFAULT_TIMEOUT_S 120

struct ctl {
	const char *socket_path;
	bool json;
	int timeout_ms;
};

/* Long option values beyond the ASCII range, for options without a short form. */
enum {
	OPT_SOCKET = 0x100,
	OPT_TIMEOUT,
	OPT_SIZE,
	OPT_INODES,
	OPT_UID,
	OPT_GID,
	OPT_MODE,
	OPT_RIOPS,
	OPT_WIOPS,
	OPT_RBPS,
	OPT_WBPS,
	OPT_BURST,
	OPT_IOPS_SIZE,
	OPT_STORAGE_CLASS,
	OPT_FORCE,
	OPT_OVERCOMMIT,
};

#define COMMON_LONG_OPTIONS                                                   \
	{ "socket", required_argument, NULL, OPT_SOCKET },                    \
		{ "output", required_argument, NULL, 'o' },                   \
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },          \
		{ "help", no_argument, NULL, 'h' }
#define COMMON_SHORT_OPTIONS ":o:h"

#define LIMIT_LONG_OPTIONS                                                    \
	{ "riops", required_argument, NULL, OPT_RIOPS },                      \
		{ "wiops", required_argument, NULL, OPT_WIOPS },              \
		{ "rbps", required_argument, NULL, OPT_RBPS },                \
		{ "wbps", required_argument, NULL, OPT_WBPS },                \
		{ "burst-seconds", required_argument, NULL, OPT_BURST },      \
		{ "iops-size", required_argument, NULL, OPT_IOPS_SIZE }

static const char common_help[] =
	"      --socket PATH         the control socket (default: $CARVEFS_SOCKET,\n"
	"                            else " WIRE_DEFAULT_SOCKET ")\n"
	"  -o, --output FORMAT       'table' (default) or 'json'\n"
	"      --timeout SECONDS     how long to wait for the daemon's reply (default 120)\n"
	"  -h, --help                show this help\n";

static const char limits_help[] =
	"      --riops N             read operations per second (0: unlimited)\n"
	"      --wiops N             write operations per second (0: unlimited)\n"
	"      --rbps QTY            read bytes per second, e.g. 100Mi (0: unlimited)\n"
	"      --wbps QTY            write bytes per second, e.g. 20Mi (0: unlimited)\n"
	"      --burst-seconds S     how long a burst may run at full speed before the\n"
	"                            limits apply, e.g. 0.5 (default 0.1)\n"
	"      --iops-size QTY       count a request larger than QTY as size/QTY\n"
	"                            operations, e.g. 64Ki (default: off)\n";

__attribute__((format(printf, 1, 2)))
static int fail_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("carvectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int fail_oom(void)
{
	fputs("carvectl: out of memory\n", stderr);
	return EXIT_DAEMON;
}

/* A whole decimal number: digits only, no sign, no spaces, at most @max. */
static int parse_count(const char *s, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int set_uint(json_t *req, const char *key, uint64_t v)
{
	return json_object_set_new(req, key, json_integer((json_int_t)v)) < 0 ? -ENOMEM : 0;
}

/*
 * The wire carries signed 64-bit integers: anything above INT64_MAX (8 EiB)
 * is refused here rather than sent as a negative number.
 */
static int opt_quantity(const char *opt, const char *arg, bool positive, uint64_t *ret)
{
	uint64_t v;
	int r;

	r = quantity_parse(arg, &v);
	if (r == -ERANGE || (r == 0 && v > INT64_MAX))
		return fail_usage("%s '%s' is too large", opt, arg);
	if (r < 0)
		return fail_usage("%s '%s' is not a valid quantity (examples: 10Gi, 500Mi, 1G, "
				  "1048576)",
				  opt, arg);
	if (positive && v == 0)
		return fail_usage("%s must be greater than zero", opt);
	*ret = v;
	return 0;
}

static int opt_count(const char *opt, const char *arg, uint64_t max, uint64_t *ret)
{
	int r = parse_count(arg, max, ret);

	if (r == -ERANGE)
		return fail_usage("%s '%s' is too large (at most %" PRIu64 ")", opt, arg, max);
	if (r < 0)
		return fail_usage("%s '%s' is not a whole number", opt, arg);
	return 0;
}

/*
 * Handles the options every command takes. Returns 0 if @c was one of them
 * and it was fine, an exit status if it failed or asked for help, and -1 if
 * @c is not a common option.
 */
static int common_option(struct ctl *ctl, int c, const char *arg, const char *const *help)
{
	uint64_t secs;

	switch (c) {
	case OPT_SOCKET:
		if (!*arg)
			return fail_usage("--socket needs a path");
		ctl->socket_path = arg;
		return 0;
	case 'o':
		if (strcmp(arg, "json") == 0)
			ctl->json = true;
		else if (strcmp(arg, "table") == 0)
			ctl->json = false;
		else
			return fail_usage("-o must be 'table' or 'json', not '%s'", arg);
		return 0;
	case OPT_TIMEOUT:
		if (opt_count("--timeout", arg, 86400, &secs) != 0)
			return EXIT_USAGE;
		if (secs == 0)
			return fail_usage("--timeout must be greater than zero");
		ctl->timeout_ms = (int)secs * 1000;
		return 0;
	case 'h':
		for (size_t i = 0; help[i]; i++)
			fputs(help[i], stdout);
		return STATUS_HELP;
	default:
		return -1;
	}
}

/* Reports what getopt_long() stopped at, as one line. */
static int bad_option(int c, const char *cmd, char *const argv[], int argc)
{
	const char *text = optind - 1 < argc && optind > 0 ? argv[optind - 1] : "";
	int len = (int)strcspn(text, "=");
	char shortopt[3] = { '-', (char)optopt, '\0' };
	const char *see = cmd ? cmd : "";
	const char *sep = cmd ? " " : "";

	/* An unknown short option inside a cluster ("-xo") is not argv[optind - 1]. */
	if (optopt && optopt < 0x100 && strncmp(text, "--", 2) != 0) {
		text = shortopt;
		len = 2;
	}
	if (c == ':')
		return fail_usage("option '%.*s' needs a value (see 'carvectl %s%s--help')", len,
				  text, see, sep);
	/* getopt_long() names the option it knows but got "--force=yes" for. */
	if (optopt && text[len] == '=')
		return fail_usage("option '%.*s' takes no value (see 'carvectl %s%s--help')", len,
				  text, see, sep);
	return fail_usage("unknown option '%.*s' (see 'carvectl %s%s--help')", len, text, see, sep);
}

/* The single NAME operand, checked as the daemon would. */
static int get_name_operand(const char *cmd, int argc, char *const argv[], const char **ret_name)
{
	struct errmsg reason;

	if (optind >= argc)
		return fail_usage("'%s' needs a volume name (see 'carvectl %s --help')", cmd, cmd);
	if (optind + 1 < argc)
		return fail_usage("'%s' takes one volume name; unexpected '%s'", cmd,
				  argv[optind + 1]);
	if (volname_validate(argv[optind], &reason) < 0)
		return fail_usage("volume name '%s' is invalid: %s", argv[optind], reason.text);
	*ret_name = argv[optind];
	return 0;
}

static int no_operands(const char *cmd, int argc, char *const argv[])
{
	if (optind < argc)
		return fail_usage("'%s' takes no arguments; unexpected '%s'", cmd, argv[optind]);
	return 0;
}

/*
 * Parses one of the IO limit options into @req. Returns 0, an exit status,
 * or -1 if @c is not a limit option.
 */
static int limit_option(json_t *req, int c, const char *arg)
{
	struct errmsg why;
	const char *key;
	uint64_t v;
	int r;

	switch (c) {
	case OPT_RIOPS:
		key = "riops";
		r = opt_count("--riops", arg, INT64_MAX, &v);
		break;
	case OPT_WIOPS:
		key = "wiops";
		r = opt_count("--wiops", arg, INT64_MAX, &v);
		break;
	case OPT_RBPS:
		key = "rbps";
		r = opt_quantity("--rbps", arg, false, &v);
		break;
	case OPT_WBPS:
		key = "wbps";
		r = opt_quantity("--wbps", arg, false, &v);
		break;
	case OPT_IOPS_SIZE:
		key = "iops_size_bytes";
		r = opt_quantity("--iops-size", arg, false, &v);
		break;
	case OPT_BURST:
		key = "burst_ms";
		r = duration_parse_seconds_ms(arg, &v, &why);
		if (r < 0)
			r = fail_usage("--burst-seconds '%s': %s", arg, why.text);
		break;
	default:
		return -1;
	}
	if (r != 0)
		return r;
	return set_uint(req, key, v) < 0 ? fail_oom() : 0;
}

/* ---- talking to the daemon ---- */

/*
 * Sends @req and returns the daemon's successful reply in *ret_reply (a new
 * reference), or prints why not and returns the exit status: unreachable
 * when the daemon did not answer, else it refused or failed.
 */
static int call(const struct ctl *ctl, json_t *req, json_t **ret_reply)
{
	struct errmsg msg;
	int r;

	r = ctlclient_call(ctl->socket_path, req, ctl->timeout_ms, ret_reply, &msg);
	if (r == 0)
		return 0;
	fprintf(stderr, "carvectl: %s%s\n", msg.text, r == -ETIMEDOUT ? " (see --timeout)" : "");
	return ctlclient_unreachable(r) ? EXIT_UNREACHABLE : EXIT_DAEMON;
}

static json_t *new_request(const char *verb, const char *name)
{
	json_t *req = json_object();

	if (!req)
		return NULL;
	if (json_object_set_new(req, "verb", json_string(verb)) < 0 ||
	    (name && json_object_set_new(req, "name", json_string(name)) < 0)) {
		json_decref(req);
		return NULL;
	}
	return req;
}

/* ---- output ---- */

static uint64_t get_u64(json_t *obj, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(obj, key));

	return v > 0 ? (uint64_t)v : 0;
}

static const char *get_str(json_t *obj, const char *key, const char *fallback)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s && *s ? s : fallback;
}

static void print_json(json_t *v)
{
	char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (text) {
		puts(text);
		free(text);
	}
}

/*
 * A size as the user would have typed it: "1Gi", "10G", else the bytes with
 * an approximation, "1234567 (1.2M)". Kubernetes spells a quantity both ways.
 */
static void format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char decimal[] = "kMGTPE";
	uint64_t unit = 1000;
	char human[16];
	int i;

	if (quantity_format(bytes, buf, len) >= 0 && strspn(buf, "0123456789") <= 4)
		return;
	for (i = 0; bytes && i < 6 && bytes % (unit * 1000) == 0; i++)
		unit *= 1000;
	if (bytes && bytes % unit == 0 && bytes / unit < 10000) {
		snprintf(buf, len, "%" PRIu64 "%c", bytes / unit, decimal[i]);
		return;
	}
	quantity_format_human(bytes, human, sizeof(human));
	snprintf(buf, len, "%" PRIu64 " (%s)", bytes, human);
}

static void format_ms_as_seconds(uint64_t ms, char *buf, size_t len)
{
	char frac[8];
	size_t n;

	snprintf(frac, sizeof(frac), "%03u", (unsigned)(ms % 1000));
	n = strlen(frac);
	while (n > 0 && frac[n - 1] == '0')
		frac[--n] = '\0';
	if (n)
		snprintf(buf, len, "%" PRIu64 ".%ss", ms / 1000, frac);
	else
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
}

/* "riops=500,wbps=20Mi", or "-" when the volume is unlimited. */
static void format_limits(json_t *limits, char *buf, size_t len)
{
	static const struct {
		const char *key, *label;
		bool bytes;
	} knobs[] = {
		{ "riops", "riops", false },
		{ "wiops", "wiops", false },
		{ "rbps", "rbps", true },
		{ "wbps", "wbps", true },
		{ "iops_size_bytes", "iops-size", true },
	};
	size_t off = 0;
	uint64_t burst;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		uint64_t v = get_u64(limits, knobs[i].key);
		char val[32];

		if (!v)
			continue;
		if (knobs[i].bytes)
			quantity_format(v, val, sizeof(val));
		else
			snprintf(val, sizeof(val), "%" PRIu64, v);
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s=%s",
					off ? "," : "", knobs[i].label, val);
	}
	burst = get_u64(limits, "burst_ms");
	if (burst) {
		char val[32];

		format_ms_as_seconds(burst, val, sizeof(val));
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%sburst=%s",
					off ? "," : "", val);
	}
	if (off == 0)
		snprintf(buf, len, "-");
}

enum { COL_NAME, COL_SIZE, COL_USED, COL_USE, COL_INODES, COL_IUSED, COL_MOUNT, COL_STATE,
       COL_LIMITS, COL_COUNT };

static const struct column {
	const char *title;
	bool right; /* numbers line up on their last digit, as in df */
} columns[COL_COUNT] = {
	[COL_NAME] = { "NAME", false },		[COL_SIZE] = { "SIZE", true },
	[COL_USED] = { "USED", true },		[COL_USE] = { "USE%", true },
	[COL_INODES] = { "INODES", true },	[COL_IUSED] = { "IUSED", true },
	[COL_MOUNT] = { "MOUNTPOINT", false },	[COL_STATE] = { "STATE", false },
	[COL_LIMITS] = { "LIMITS", false },
};

/* One row of the list table; every cell owned by the row. */
struct row {
	char *cell[COL_COUNT];
};

static int fill_row(json_t *vol, struct row *row)
{
	uint64_t cap = get_u64(vol, "capacity_bytes"), used = get_u64(vol, "used_bytes");
	uint64_t ilimit = get_u64(vol, "inode_limit");
	char buf[COL_COUNT][512];

	snprintf(buf[COL_NAME], sizeof(buf[0]), "%s", get_str(vol, "name", "?"));
	quantity_format_human(cap, buf[COL_SIZE], sizeof(buf[0]));
	quantity_format_human(used, buf[COL_USED], sizeof(buf[0]));
	/* Rounded up, as df does: a volume is never shown emptier than it is. */
	if (cap)
		snprintf(buf[COL_USE], sizeof(buf[0]), "%" PRIu64 "%%",
			 used / cap * 100 + ((used % cap) * 100 + cap - 1) / cap);
	else
		snprintf(buf[COL_USE], sizeof(buf[0]), "-");
	if (ilimit)
		snprintf(buf[COL_INODES], sizeof(buf[0]), "%" PRIu64, ilimit);
	else
		snprintf(buf[COL_INODES], sizeof(buf[0]), "-");
	snprintf(buf[COL_IUSED], sizeof(buf[0]), "%" PRIu64, get_u64(vol, "used_inodes"));
	snprintf(buf[COL_MOUNT], sizeof(buf[0]), "%s", get_str(vol, "mountpoint", "-"));
	snprintf(buf[COL_STATE], sizeof(buf[0]), "%s", get_str(vol, "state", "-"));
	format_limits(json_object_get(vol, "limits"), buf[COL_LIMITS], sizeof(buf[0]));

	for (int i = 0; i < COL_COUNT; i++) {
		row->cell[i] = strdup(buf[i]);
		if (!row->cell[i])
			return -ENOMEM;
	}
	return 0;
}

static int print_list(json_t *vols)
{
	size_t n = json_array_size(vols), width[COL_COUNT];
	struct row *rows;
	int status = EXIT_SUCCESS;

	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows)
		return fail_oom();
	for (int c = 0; c < COL_COUNT; c++)
		width[c] = strlen(columns[c].title);
	for (size_t i = 0; i < n; i++) {
		if (fill_row(json_array_get(vols, i), &rows[i]) < 0) {
			status = fail_oom();
			goto out;
		}
		for (int c = 0; c < COL_COUNT; c++)
			if (strlen(rows[i].cell[c]) > width[c])
				width[c] = strlen(rows[i].cell[c]);
	}
	for (size_t i = 0; i <= n; i++) {
		for (int c = 0; c < COL_COUNT; c++) {
			const char *s = i == 0 ? columns[c].title : rows[i - 1].cell[c];
			int w = c == COL_COUNT - 1 && !columns[c].right ? 0 : (int)width[c];

			printf("%s%*s", c ? "  " : "", columns[c].right ? w : -w, s);
		}
		putchar('\n');
	}
out:
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < COL_COUNT; c++)
			free(rows[i].cell[c]);
	free(rows);
	return status;
}

/* The stats lines, known fields first, in this order; unknown ones follow. */
static const char *const stats_order[] = {
	"name", "state", "mountpoint", "capacity_bytes", "used_bytes", "inode_limit",
	"used_inodes", "uid", "gid", "mode", "created_unix", "storage_class", "labels",
	"limits", "io", NULL,
};

/* Adds a reading aid after the raw value of the fields that need one. */
static void annotate(const char *key, json_t *v, json_t *vol, char *buf, size_t len)
{
	uint64_t n = json_is_integer(v) && json_integer_value(v) > 0 ?
			     (uint64_t)json_integer_value(v) : 0;
	char q[32];

	buf[0] = '\0';
	if (!json_is_integer(v))
		return;
	if (strcmp(key, "capacity_bytes") == 0 || strcmp(key, "io.read_bytes") == 0 ||
	    strcmp(key, "io.write_bytes") == 0) {
		quantity_format_human(n, q, sizeof(q));
		snprintf(buf, len, " (%s)", q);
	} else if (strcmp(key, "used_bytes") == 0) {
		uint64_t cap = get_u64(vol, "capacity_bytes");

		quantity_format_human(n, q, sizeof(q));
		if (cap)
			snprintf(buf, len, " (%s, %" PRIu64 "%%)", q,
				 n / cap * 100 + ((n % cap) * 100 + cap - 1) / cap);
		else
			snprintf(buf, len, " (%s)", q);
	} else if (strcmp(key, "inode_limit") == 0 && n == 0) {
		snprintf(buf, len, " (unlimited)");
	} else if (strcmp(key, "mode") == 0) {
		snprintf(buf, len, " (0%03" PRIo64 ")", n);
	} else if (strcmp(key, "created_unix") == 0) {
		time_t t = (time_t)n;
		struct tm tm;

		if (gmtime_r(&t, &tm))
			strftime(buf, len, " (%Y-%m-%dT%H:%M:%SZ)", &tm);
	} else if (strncmp(key, "limits.", 7) == 0) {
		const char *k = key + 7;

		if (strcmp(k, "burst_ms") == 0) {
			format_ms_as_seconds(n ? n : 100, q, sizeof(q));
			snprintf(buf, len, " (%s%s)", q, n ? "" : ", the default");
		} else if (strcmp(k, "iops_size_bytes") == 0) {
			if (n)
				quantity_format(n, q, sizeof(q));
			snprintf(buf, len, " (%s)", n ? q : "off");
		} else if (n == 0) {
			snprintf(buf, len, " (unlimited)");
		} else if (strcmp(k, "rbps") == 0 || strcmp(k, "wbps") == 0) {
			quantity_format(n, q, sizeof(q));
			snprintf(buf, len, " (%s/s)", q);
		}
	} else if (strcmp(key, "io.throttled_ns") == 0) {
		snprintf(buf, len, " (%.3fs)", (double)n / 1e9);
	} else if (strncmp(key, "io.", 3) == 0 && strstr(key, "_latency.")) {
		const char *k = strstr(key, "_latency.") + 9;

		if (strcmp(k, "sum_ns") == 0)
			snprintf(buf, len, " (%.3fs)", (double)n / 1e9);
		else if (strcmp(k, "p50_ns") == 0 || strcmp(k, "p99_ns") == 0)
			snprintf(buf, len, " (%.3fms, estimated)", (double)n / 1e6);
	}
}

struct stat_line {
	char *key, *value;
};

struct stat_lines {
	struct stat_line *v;
	size_t n, cap;
};

static int add_stat(struct stat_lines *l, const char *key, json_t *v, json_t *vol)
{
	char note[128], *raw;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct stat_line *nv = realloc(l->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	if (json_is_string(v))
		raw = strdup(*json_string_value(v) ? json_string_value(v) : "-");
	else
		raw = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!raw)
		return -ENOMEM;
	annotate(key, v, vol, note, sizeof(note));
	l->v[l->n].key = strdup(key);
	if (!l->v[l->n].key || asprintf(&l->v[l->n].value, "%s%s", raw, note) < 0) {
		free(l->v[l->n].key);
		free(raw);
		return -ENOMEM;
	}
	free(raw);
	l->n++;
	return 0;
}

static int collect_stats_one(struct stat_lines *l, const char *prefix, const char *key, json_t *v,
			     json_t *vol);

/* Nested objects ("limits", "io") are flattened to "limits.riops" and so on. */
static int collect_stats(struct stat_lines *l, const char *prefix, json_t *obj, json_t *vol,
			 bool ordered)
{
	const char *key;
	json_t *v;

	for (size_t i = 0; ordered && stats_order[i]; i++) {
		v = json_object_get(obj, stats_order[i]);
		if (v && collect_stats_one(l, prefix, stats_order[i], v, vol) < 0)
			return -ENOMEM;
	}
	json_object_foreach(obj, key, v) {
		bool seen = false;

		for (size_t i = 0; ordered && stats_order[i]; i++)
			seen = seen || strcmp(stats_order[i], key) == 0;
		if (!seen && collect_stats_one(l, prefix, key, v, vol) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int collect_stats_one(struct stat_lines *l, const char *prefix, const char *key, json_t *v,
			     json_t *vol)
{
	char full[256];

	snprintf(full, sizeof(full), "%s%s", prefix, key);
	/* Labels stay one line: they are a user's map, not fields of ours. */
	if (json_is_object(v) && strcmp(full, "labels") != 0) {
		char sub[sizeof(full) + 1];

		snprintf(sub, sizeof(sub), "%s.", full);
		return collect_stats(l, sub, v, vol, false);
	}
	return add_stat(l, full, v, vol);
}

static int print_stats(json_t *vol)
{
	struct stat_lines l = { 0 };
	size_t width = 0;
	int status = EXIT_SUCCESS;

	if (collect_stats(&l, "", vol, vol, true) < 0) {
		status = fail_oom();
		goto out;
	}
	for (size_t i = 0; i < l.n; i++)
		if (strlen(l.v[i].key) > width)
			width = strlen(l.v[i].key);
	for (size_t i = 0; i < l.n; i++)
		printf("%s:%*s %s\n", l.v[i].key, (int)(width - strlen(l.v[i].key)), "",
		       l.v[i].value);
out:
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].key);
		free(l.v[i].value);
	}
	free(l.v);
	return status;
}

/* With -o json, what a command prints: the volume when the reply has one. */
static void print_reply_json(json_t *reply, const char *member)
{
	json_t *v = member ? json_object_get(reply, member) : NULL;

	print_json(v ? v : reply);
}

/* ---- commands ---- */

static const char create_help[] =
	"Usage: carvectl create NAME --size QTY [OPTIONS]\n"
	"\n"
	"Carve a new volume NAME with a capacity of QTY bytes and mount it in the\n"
	"daemon's discovery directory.\n"
	"\n"
	"Options:\n"
	"      --size QTY            capacity, e.g. 10Gi (required)\n"
	"      --inodes N            inode limit (default 0: unlimited)\n"
	"      --uid U               owner of the volume's root directory (default 0)\n"
	"      --gid G               group of the volume's root directory (default 0)\n"
	"      --mode M              octal mode of the volume's root directory\n"
	"                            (default 0755)\n"
	"      --storage-class NAME  the StorageClass the volume is carved for\n"
	"      --overcommit RATIO    refuse unless what all volumes may still write fits\n"
	"                            in the pool's free space x RATIO (default: the\n"
	"                            volume only has to fit on the pool's filesystem)\n";

/* --overcommit RATIO: a number above 0, sent as "overcommit". */
static int opt_overcommit(json_t *req, const char *arg)
{
	char *end;
	double ratio;

	errno = 0;
	ratio = strtod(arg, &end);
	if (!*arg || *end || errno || !(ratio > 0) || ratio > 1000)
		return fail_usage("--overcommit '%s' is not a ratio above 0 and at most 1000 "
				  "(e.g. 1 or 1.5)",
				  arg);
	if (json_object_set_new(req, "overcommit", json_real(ratio)) < 0)
		return fail_oom();
	return 0;
}

static int cmd_create(struct ctl *ctl, int argc, char *argv[])
{
	static const struct option opts[] = {
		COMMON_LONG_OPTIONS,
		LIMIT_LONG_OPTIONS,
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "inodes", required_argument, NULL, OPT_INODES },
		{ "uid", required_argument, NULL, OPT_UID },
		{ "gid", required_argument, NULL, OPT_GID },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "storage-class", required_argument, NULL, OPT_STORAGE_CLASS },
		{ "overcommit", required_argument, NULL, OPT_OVERCOMMIT },
		{}
	};
	static const char *const help[] = { create_help, limits_help, common_help, NULL };
	char size_text[64];
	json_t *req, *reply = NULL, *vol;
	bool has_size = false;
	const char *name;
	uint64_t v;
	int c, r;

	req = new_request("create", NULL);
	if (!req)
		return fail_oom();
	while ((c = getopt_long(argc, argv, COMMON_SHORT_OPTIONS, opts, NULL)) != -1) {
		r = common_option(ctl, c, optarg, help);
		if (r < 0)
			r = limit_option(req, c, optarg);
		if (r >= 0) {
			if (r != 0)
				goto out;
			continue;
		}
		r = 0;
		switch (c) {
		case OPT_SIZE:
			r = opt_quantity("--size", optarg, true, &v);
			if (r == 0)
				r = set_uint(req, "size_bytes", v);
			has_size = true;
			break;
		case OPT_INODES:
			r = opt_count("--inodes", optarg, INT64_MAX, &v);
			if (r == 0)
				r = set_uint(req, "inodes", v);
			break;
		case OPT_UID:
		case OPT_GID:
			r = opt_count(c == OPT_UID ? "--uid" : "--gid", optarg, UINT32_MAX - 1, &v);
			if (r == 0)
				r = set_uint(req, c == OPT_UID ? "uid" : "gid", v);
			break;
		case OPT_MODE: {
			char *end;

			errno = 0;
			v = strtoull(optarg, &end, 8);
			if (!*optarg || *end || errno || optarg[0] == '-' || optarg[0] == '+' ||
			    v > 07777)
				r = fail_usage("--mode '%s' is not an octal mode from 0 to 7777",
					       optarg);
			else
				r = set_uint(req, "mode", v);
			break;
		}
		case OPT_STORAGE_CLASS:
			if (json_object_set_new(req, "storage_class", json_string(optarg)) < 0)
				r = -ENOMEM;
			break;
		case OPT_OVERCOMMIT:
			r = opt_overcommit(req, optarg);
			break;
		default:
			r = bad_option(c, "create", argv, argc);
			break;
		}
		if (r == -ENOMEM)
			r = fail_oom();
		if (r != 0)
			goto out;
	}
	r = get_name_operand("create", argc, argv, &name);
	if (r != 0)
		goto out;
	if (!has_size) {
		r = fail_usage("'create' needs --size, e.g. --size 10Gi");
		goto out;
	}
	if (json_object_set_new(req, "name", json_string(name)) < 0) {
		r = fail_oom();
		goto out;
	}
	r = call(ctl, req, &reply);
	if (r != 0)
		goto out;
	vol = json_object_get(reply, "volume");
	if (ctl->json) {
		print_reply_json(reply, "volume");
	} else if (vol) {
		format_size(get_u64(vol, "capacity_bytes"), size_text, sizeof(size_text));
		printf("volume '%s' created: %s at %s\n", name, size_text,
		       get_str(vol, "mountpoint", "?"));
	} else {
		printf("volume '%s' created\n", name);
	}
out:
	json_decref(reply);
	json_decref(req);
	return r == STATUS_HELP ? EXIT_SUCCESS : r;
}

static const char delete_help[] =
	"Usage: carvectl delete NAME [--force]\n"
	"\n"
	"Unmount volume NAME and delete it with all its data. A volume that is in\n"
	"use (open files, a process inside) is refused unless --force is given.\n"
	"\n"
	"Options:\n"
	"      --force               delete even when the volume is in use\n";

static const char wipe_help[] =
	"Usage: carvectl wipe NAME\n"
	"\n"
	"Delete every file in volume NAME. The volume stays, empty, with its\n"
	"capacity and limits.\n"
	"\n"
	"Options:\n";

static const char stats_help[] =
	"Usage: carvectl stats NAME\n"
	"\n"
	"Show everything the daemon knows about volume NAME: capacity, usage,\n"
	"owner, IO limits, IO counters and request latency (count, sum, and the\n"
	"median and 99th percentile estimated from the histogram's buckets), one\n"
	"\"key: value\" line each.\n"
	"\n"
	"Options:\n";

static const char pool_help[] =
	"Usage: carvectl pool\n"
	"\n"
	"Show the pool's space: its filesystem's size and free space, the volumes'\n"
	"capacities summed (allocated) and what they may still write (committed).\n"
	"\n"
	"Options:\n";

static const char list_help[] =
	"Usage: carvectl list\n"
	"\n"
	"List the volumes of the daemon: name, capacity, usage, inode limit and\n"
	"usage, mountpoint, state and IO limits.\n"
	"\n"
	"Options:\n";

static int print_pool(json_t *pool)
{
	static const char *const sizes[] = { "size_bytes", "free_bytes", "allocated_bytes",
					     "committed_bytes", NULL };
	char text[64];

	if (!json_is_object(pool)) {
		fprintf(stderr, "carvectl: the daemon's reply has no pool\n");
		return EXIT_FAILURE;
	}
	printf("path: %s\n", get_str(pool, "path", "?"));
	for (size_t i = 0; sizes[i]; i++) {
		format_size(get_u64(pool, sizes[i]), text, sizeof(text));
		printf("%.*s: %s\n", (int)(strlen(sizes[i]) - strlen("_bytes")), sizes[i], text);
	}
	printf("volumes: %" PRIu64 "\n", get_u64(pool, "volumes"));
	return 0;
}

/* delete, wipe, stats, list and pool: a name or nothing, and at most --force. */
static int cmd_simple(struct ctl *ctl, int argc, char *argv[])
{
	static const struct option opts[] = {
		COMMON_LONG_OPTIONS,
		{ "force", no_argument, NULL, OPT_FORCE },
		{}
	};
	const char *cmd = argv[0], *name = NULL;
	bool is_delete = strcmp(cmd, "delete") == 0, is_list = strcmp(cmd, "list") == 0;
	bool is_pool = strcmp(cmd, "pool") == 0;
	const char *help[] = { stats_help, common_help, NULL };
	json_t *req = NULL, *reply = NULL;
	bool force = false;
	int c, r = 0;

	if (is_delete)
		help[0] = delete_help;
	else if (is_list)
		help[0] = list_help;
	else if (is_pool)
		help[0] = pool_help;
	else if (strcmp(cmd, "wipe") == 0)
		help[0] = wipe_help;
	while ((c = getopt_long(argc, argv, COMMON_SHORT_OPTIONS, opts, NULL)) != -1) {
		r = common_option(ctl, c, optarg, help);
		if (r > 0)
			goto out;
		if (r == 0)
			continue;
		r = 0;
		if (c == OPT_FORCE && is_delete) {
			force = true;
			continue;
		}
		r = bad_option(c == OPT_FORCE ? '?' : c, cmd, argv, argc);
		goto out;
	}
	r = is_list || is_pool ? no_operands(cmd, argc, argv) :
				 get_name_operand(cmd, argc, argv, &name);
	if (r != 0)
		goto out;
	req = new_request(cmd, name);
	if (!req || (force && json_object_set_new(req, "force", json_true()) < 0)) {
		r = fail_oom();
		goto out;
	}
	r = call(ctl, req, &reply);
	if (r != 0)
		goto out;
	if (is_list)
		r = ctl->json ? (print_json(json_object_get(reply, "volumes")), 0) :
				print_list(json_object_get(reply, "volumes"));
	else if (is_pool)
		r = ctl->json ? (print_reply_json(reply, "pool"), 0) :
				print_pool(json_object_get(reply, "pool"));
	else if (strcmp(cmd, "stats") == 0)
		r = ctl->json ? (print_reply_json(reply, "volume"), 0) :
				print_stats(json_object_get(reply, "volume"));
	else if (ctl->json)
		print_reply_json(reply, NULL);
	else
		printf("volume '%s' %s\n", name, is_delete ? "deleted" : "wiped");
out:
	json_decref(reply);
	json_decref(req);
	return r == STATUS_HELP ? EXIT_SUCCESS : r;
}

static const char resize_help[] =
	"Usage: carvectl resize NAME --size QTY\n"
	"\n"
	"Change the capacity of volume NAME to QTY bytes. Growing needs room in the\n"
	"pool; shrinking below what the volume already uses is refused.\n"
	"\n"
	"Options:\n"
	"      --size QTY            the new capacity, e.g. 20Gi (required)\n"
	"      --overcommit RATIO    refuse to grow unless what all volumes may still\n"
	"                            write fits in the pool's free space x RATIO\n";

static const char set_limits_help[] =
	"Usage: carvectl set-limits NAME LIMIT...\n"
	"\n"
	"Change the IO limits of volume NAME while it is in use. Only the limits\n"
	"given change; 0 removes a limit. At least one is needed.\n"
	"\n"
	"Options:\n";

/* resize and set-limits: both change a live volume and print its new state. */
static int cmd_change(struct ctl *ctl, int argc, char *argv[])
{
	static const struct option resize_opts[] = {
		COMMON_LONG_OPTIONS,
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "overcommit", required_argument, NULL, OPT_OVERCOMMIT },
		{}
	};
	static const struct option limits_opts[] = {
		COMMON_LONG_OPTIONS,
		LIMIT_LONG_OPTIONS,
		{}
	};
	const char *cmd = argv[0], *name;
	bool is_resize = strcmp(cmd, "resize") == 0, has_size = false;
	const char *help[] = { resize_help, common_help, NULL, NULL };
	json_t *req, *reply = NULL, *vol;
	char text[512];
	uint64_t v;
	int c, r = 0;

	if (!is_resize) {
		help[0] = set_limits_help;
		help[1] = limits_help;
		help[2] = common_help;
	}
	req = new_request(cmd, NULL);
	if (!req)
		return fail_oom();
	while ((c = getopt_long(argc, argv, COMMON_SHORT_OPTIONS,
				is_resize ? resize_opts : limits_opts, NULL)) != -1) {
		r = common_option(ctl, c, optarg, help);
		if (r < 0 && !is_resize)
			r = limit_option(req, c, optarg);
		if (r > 0)
			goto out;
		if (r == 0)
			continue;
		if (c == OPT_SIZE) {
			r = opt_quantity("--size", optarg, true, &v);
			if (r == 0 && set_uint(req, "size_bytes", v) < 0)
				r = fail_oom();
			if (r != 0)
				goto out;
			has_size = true;
			continue;
		}
		if (c == OPT_OVERCOMMIT && is_resize) {
			r = opt_overcommit(req, optarg);
			if (r != 0)
				goto out;
			continue;
		}
		r = bad_option(c, cmd, argv, argc);
		goto out;
	}
	r = get_name_operand(cmd, argc, argv, &name);
	if (r != 0)
		goto out;
	if (is_resize && !has_size) {
		r = fail_usage("'resize' needs --size, e.g. --size 20Gi");
		goto out;
	}
	/* Only "verb" is in the request so far when no limit was given. */
	if (!is_resize && json_object_size(req) < 2) {
		r = fail_usage("'set-limits' needs at least one of --riops, --wiops, --rbps, "
			       "--wbps, --burst-seconds, --iops-size");
		goto out;
	}
	if (json_object_set_new(req, "name", json_string(name)) < 0) {
		r = fail_oom();
		goto out;
	}
	r = call(ctl, req, &reply);
	if (r != 0)
		goto out;
	vol = json_object_get(reply, "volume");
	if (ctl->json) {
		print_reply_json(reply, "volume");
	} else if (!vol) {
		printf("volume '%s' %s\n", name, is_resize ? "resized" : "limits set");
	} else if (is_resize) {
		format_size(get_u64(vol, "capacity_bytes"), text, sizeof(text));
		printf("volume '%s' resized to %s\n", name, text);
	} else {
		format_limits(json_object_get(vol, "limits"), text, sizeof(text));
		if (strcmp(text, "-") == 0)
			printf("volume '%s' limits set: none, IO is unlimited\n", name);
		else
			printf("volume '%s' limits set: %s\n", name, text);
	}
out:
	json_decref(reply);
	json_decref(req);
	return r == STATUS_HELP ? EXIT_SUCCESS : r;
}

static const struct command {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char *argv[]);
} commands[] = {
	{ "create", cmd_create },
	{ "delete", cmd_simple },
	{ "resize", cmd_change },
	{ "set-limits", cmd_change },
	{ "wipe", cmd_simple },
	{ "list", cmd_simple },
	{ "stats", cmd_simple },
	{ "pool", cmd_simple },
};

static const char main_help[] =
	"Usage: carvectl [OPTIONS] COMMAND [ARGS...]\n"
	"\n"
	"Manage the volumes of the carvefs daemon through its control socket.\n"
	"\n"
	"Commands:\n"
	"  create NAME --size QTY [OPTIONS]  carve a new volume and mount it\n"
	"  delete NAME [--force]             unmount a volume and delete its data\n"
	"  resize NAME --size QTY            change a volume's capacity\n"
	"  set-limits NAME LIMIT...          change a volume's IO limits\n"
	"  wipe NAME                         empty a volume, keep the volume\n"
	"  list                              list the volumes\n"
	"  stats NAME                        show one volume in detail\n"
	"  pool                              show the pool's size, free and committed space\n"
	"\n"
	"Options (also accepted after the command):\n";

static const char main_help_tail[] =
	"  -V, --version             show the version\n"
	"\n"
	"'carvectl COMMAND --help' shows a command's options. QTY is a Kubernetes\n"
	"quantity: 10Gi, 500Mi, 1.5Ti, 1G, 1048576.\n"
	"\n"
	"Exit status: 0 success, 1 the daemon reported an error, 2 usage error,\n"
	"3 the daemon cannot be reached.\n";

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		COMMON_LONG_OPTIONS,
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	struct ctl ctl = { .socket_path = WIRE_DEFAULT_SOCKET,
			   .timeout_ms = DEFAULT_TIMEOUT_S * 1000 };
	static const char *const help[] = { main_help, common_help, main_help_tail, NULL };
	const char *env = getenv("CARVEFS_SOCKET");
	int c, r;

	if (env && *env)
		ctl.socket_path = env;
	/* Messages are ours ("carvectl: ..."), one line, not getopt's. */
	opterr = 0;
	/* "+": the command's own options are parsed by the command. */
	while ((c = getopt_long(argc, argv, "+" COMMON_SHORT_OPTIONS "V", opts, NULL)) != -1) {
		r = common_option(&ctl, c, optarg, help);
		if (r == STATUS_HELP)
			return EXIT_SUCCESS;
		if (r > 0)
			return r;
		if (r == 0)
			continue;
		if (c == 'V') {
			printf("carvectl %s\n", CARVEFS_VERSION);
			return EXIT_SUCCESS;
		}
		return bad_option(c, NULL, argv, argc);
	}
	if (optind >= argc)
		return fail_usage("no command given (see 'carvectl --help')");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			char **sub_argv = argv + optind;
			int sub_argc = argc - optind;

			/* 0 makes glibc's getopt start afresh on the command's arguments. */
			optind = 0;
			return commands[i].run(&ctl, sub_argc, sub_argv);
		}
	}
	return fail_usage("unknown command '%s' (see 'carvectl --help')", argv[optind]);
}
