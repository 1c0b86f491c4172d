/*
 * main.c - carve-provisioner: registers a node's local volumes as
 * Kubernetes local PersistentVolumes, and with the api sink carves carvefs
 * volumes for claims of its StorageClasses (local.carvefs.io or
 * carvefs.io/local, dynamic.h).
 *
 * Every pass discovers the volumes of every configured class, matches them
 * with the PVs the sink already holds (by node and path, so a restart never
 * registers a disk twice), creates the missing ones and, for a sink that
 * mirrors the disks, removes the PVs of volumes that went away. Passes run
 * every --discovery-period, at once when the configuration directory
 * changes, and on SIGHUP. The configuration is re-read when its files
 * change; a bad one is reported and the last good one stays in force.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "static/cleaner.h"
#include "static/discovery.h"
#include "duration.h"
#include "dynamic/dynamic.h"
#include "dynamic/dynspec.h"
#include "kube/events.h"
#include "dynamic/expand.h"
#include "health.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"
#include "kube/kwatch.h"
#include "log.h"
#include "metrics.h"
#include "dynamic/nodecap.h"
#include "dynamic/storagecap.h"
#include "config.h"
#include "pv.h"
#include "quantity.h"
#include "retryset.h"
#include "sink/sink.h"
#include "wire.h"
#include "jpath.h"
#include "clock.h"

#define DEFAULT_PERIOD_NS (10 * DURATION_NS_PER_SEC)
/* How long a burst of config file events is given to settle before a reload. */
#define CONFIG_SETTLE_MS 200

enum {
	EXIT_USAGE = 2,
};

struct options {
	const char *config_dir;
	const char *node;
	const char *kubeconfig;
	const char *sink;
	uint64_t period_ns;
	const char *listen;
	const char *carvefs_socket;
	const char *namespace;
	bool once;
};

struct state {
	struct options opt;
	char *node_name;
	struct sink *sink;
	struct prov_config *cfg;	   /* the last good configuration */
	struct provconfig_snapshot *seen; /* the files last read, good or bad */
	struct health *health;
	struct discovery *disc;
	struct kwatch *watch; /* api sink, periodic mode: passes on PV events */
	/* api sink: a client of its own for claims, Nodes and Events */
	struct kube *kube;
	struct expand *expand;	 /* grows volumes whose claims ask for more */
	struct nodecap *nodecap; /* the node's free capacity on its Node */
	struct storagecap *storagecap; /* ... and as CSIStorageCapacity objects */
	struct dynamic *dyn;	 /* carves volumes for claims of carvefs's classes */
	struct kwatch *claim_watch; /* periodic mode: passes on claims for this node */
	struct retryset *clean_retries; /* released PVs whose cleaning failed, by name */
	int last_read_error; /* said once, not every period */
	bool warned_owner_ref;
};


#define CLEAN_RETRY_BASE_NS (5ull * DURATION_NS_PER_SEC)
#define CLEAN_RETRY_CAP_NS (300ull * DURATION_NS_PER_SEC)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: carve-provisioner [OPTION]...\n"
		"Registers this node's local volumes (carvefs volumes and other mounted disks)\n"
		"as Kubernetes local PersistentVolumes. With the api sink, also carves carvefs\n"
		"volumes for claims of StorageClasses whose provisioner is local.carvefs.io\n"
		"(or carvefs.io/local), and publishes the node's room for the scheduler.\n"
		"\n"
		"  --config DIR            configuration directory, one file per key as a\n"
		"                          mounted ConfigMap gives it (default %s)\n"
		"  --node NAME             this node's name (default $MY_NODE_NAME, then the\n"
		"                          hostname in lowercase)\n"
		"  --kubeconfig FILE       cluster credentials for the api sink; without it the\n"
		"                          api sink uses the in-cluster service account\n"
		"  --sink api|dir[:PATH]   where PVs go: the Kubernetes API, or one manifest per\n"
		"                          PV in PATH (default: api with --kubeconfig or in a\n"
		"                          cluster, else dir:%s)\n"
		"  --discovery-period DUR  time between discovery passes, e.g. 10s, 1m\n"
		"                          (default 10s)\n"
		"  --listen ADDR           serve /healthz, /readyz and /metrics on ADDR\n"
		"                          (HOST:PORT, [IPV6]:PORT or :PORT); off by default\n"
		"  --carvefs-socket PATH   the carvefs daemon's control socket, used to wipe\n"
		"                          released carvefs volumes, grow them, measure the\n"
		"                          pool, and carve volumes for claims (default %s)\n"
		"  --namespace NS          namespace of the CSIStorageCapacity objects saying\n"
		"                          the node's room (default $MY_POD_NAMESPACE, then\n"
		"                          %s)\n"
		"  --once                  run one pass and exit: 0 if it had no error, 1 if\n"
		"                          it had\n"
		"  --log-level LEVEL       error, warn, info or debug (default info)\n"
		"  -h, --help              show this help and exit\n"
		"\n"
		"See carve-provisioner(8).\n",
		PROVCONFIG_DEFAULT_DIR, DIRSINK_DEFAULT_PATH, WIRE_DEFAULT_SOCKET,
		STORAGECAP_DEFAULT_NAMESPACE);
}

/* ---- configuration ------------------------------------------------------ */

/*
 * Reads the configuration directory. Returns 1 if a new configuration took
 * effect, 0 if nothing changed or the new files are bad (reported; the last
 * good configuration stays), or -errno if there is no good configuration at
 * all (the first load failed).
 */
static int config_reload(struct state *st)
{
	struct provconfig_snapshot *snap = NULL;
	struct prov_config *cfg = NULL;
	struct errmsg err;
	int fd, r;

	fd = open(st->opt.config_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto fail_read;
	}
	r = provconfig_snapshot_read(fd, &snap);
	close(fd);
	if (r < 0)
		goto fail_read;
	st->last_read_error = 0;
	if (st->seen && provconfig_snapshot_equal(snap, st->seen)) {
		provconfig_snapshot_free(snap);
		return 0;
	}
	provconfig_snapshot_free(st->seen);
	st->seen = snap;

	r = provconfig_parse(snap, &cfg, &err);
	if (r < 0) {
		if (r == -ENOMEM)
			return log_error_errno(r, "cannot parse the configuration");
		log_error("%s/%s", st->opt.config_dir, err.text);
		if (!st->cfg)
			return r;
		log_warn("keeping the last good configuration");
		return 0;
	}
	for (size_t i = 0; i < cfg->n_warnings; i++)
		log_warn("%s/%s", st->opt.config_dir, cfg->warnings[i]);
	log_info("configuration %s: %zu storage class(es)", st->cfg ? "reloaded" : "loaded",
		 cfg->n_classes);
	for (size_t i = 0; i < cfg->n_classes; i++) {
		const struct prov_class *c = &cfg->classes[i];

		log_debug("class '%s': mountDir \"%s\", hostDir \"%s\", volumeMode %s", c->name,
			  c->mount_dir, c->host_dir, provconfig_volume_mode_name(c->volume_mode));
	}
	provconfig_free(st->cfg);
	st->cfg = cfg;
	return 1;

fail_read:
	if (r == st->last_read_error)
		return 0;
	st->last_read_error = r;
	log_error_errno(r, "cannot read the configuration directory \"%s\"", st->opt.config_dir);
	if (!st->cfg)
		return r;
	log_warn("keeping the last good configuration");
	return 0;
}

/* ---- one pass ----------------------------------------------------------- */

static bool volume_present(const struct disc_result *res, const char *host_path)
{
	for (size_t i = 0; i < res->n_volumes; i++)
		if (strcmp(res->volumes[i].host_path, host_path) == 0)
			return true;
	return false;
}

/* Creates the PV of @v unless @pvs has one for it. Returns 0 or -errno (logged). */
static int register_volume(struct state *st, const struct disc_volume *v, const json_t *node,
			   const char *hostname, json_t *pvs)
{
	json_t *sc = NULL, *pv = NULL, *existing;
	const char *why = NULL;
	char size[32];
	int r;

	/* A volume carved for a claim gets its PV from dynamic provisioning, never here. */
	if (st->dyn && !v->is_block && v->fstype &&
	    strcmp(v->fstype, DISCOVERY_FSTYPE_CARVEFS) == 0 &&
	    dynamic_owns_volume(st->dyn, cleaner_carvefs_name(v->source, v->mount_path))) {
		log_debug("volume at \"%s\" belongs to a claim", v->host_path);
		return 0;
	}
	existing = pv_find(pvs, hostname, v->host_path);
	if (existing) {
		log_debug("volume at \"%s\" has PV '%s'", v->host_path, pv_get_name(existing));
		return 0;
	}
	r = sink_get_storage_class(st->sink, v->cls->name, &sc);
	if (r == -ENOENT) {
		log_error("StorageClass '%s' does not exist: create it; the volume at \"%s\" is "
			  "registered at the first pass after that",
			  v->cls->name, v->host_path);
		return r;
	}
	if (r < 0)
		return log_error_errno(r, "class '%s': cannot get the StorageClass", v->cls->name);
	r = pv_build(&(struct pv_request){ .config = st->cfg,
					   .cls = v->cls,
					   .node_name = st->node_name,
					   .node = node,
					   .storage_class = sc,
					   .entry = v->entry,
					   .is_block = v->is_block,
					   .capacity_bytes = v->capacity_bytes },
		     &pv, &why);
	if (r < 0) {
		if (why)
			log_error("volume at \"%s\": no PV: %s", v->mount_path, why);
		else
			log_error_errno(r, "volume at \"%s\": no PV", v->mount_path);
		goto out;
	}
	r = sink_create(st->sink, pv);
	if (r == -EEXIST) {
		log_error("volume at \"%s\": a PV named '%s' exists for another path or node",
			  v->host_path, pv_get_name(pv));
		goto out;
	}
	if (r < 0) {
		log_error_errno(r, "volume at \"%s\": cannot create PV '%s'", v->host_path,
				pv_get_name(pv));
		goto out;
	}
	metrics_discovered(v->is_block);
	if (quantity_format(pv_capacity_round(v->capacity_bytes), size, sizeof(size)) < 0)
		snprintf(size, sizeof(size), "?");
	log_info("created PV '%s' for %s volume at \"%s\" (%s, class '%s')", pv_get_name(pv),
		 v->is_block ? "block" : v->fstype ? v->fstype : "filesystem", v->host_path, size,
		 v->cls->name);
	/* Another class sharing the hostDir must now see this one. */
	if (json_array_append(pvs, pv) < 0)
		r = -ENOMEM;
out:
	json_decref(sc);
	json_decref(pv);
	return r;
}

static const struct disc_volume *volume_at(const struct disc_result *res, const char *host_path)
{
	for (size_t i = 0; i < res->n_volumes; i++)
		if (strcmp(res->volumes[i].host_path, host_path) == 0)
			return &res->volumes[i];
	return NULL;
}

/*
 * The release cycle: a PV of ours whose claim went away (Released) with
 * reclaim policy Delete has its volume cleaned and is then deleted; the
 * next pass registers the volume afresh. The PV stays in @pvs, so this pass
 * does not register it again while it is being deleted. Returns the number
 * of failures (logged).
 */
static unsigned release_volumes(struct state *st, const struct disc_result *res,
				const char *hostname, const char *prov, const json_t *pvs)
{
	unsigned errors = 0;
	size_t i;
	json_t *pv;

	json_array_foreach(pvs, i, pv)
	{
		const char *by = pv_get_provisioned_by(pv), *path = pv_get_path(pv);
		const char *name = pv_get_name(pv);
		const char *phase = jpath_str(pv, "status", "phase");
		const char *policy = jpath_str(pv, "spec", "persistentVolumeReclaimPolicy");
		const struct disc_volume *v;
		uint64_t start;
		int r;

		if (!by || strcmp(by, prov) != 0 || !path || !name || !pv_on_node(pv, hostname) ||
		    !phase || strcmp(phase, "Released") != 0 || !policy ||
		    strcmp(policy, "Delete") != 0 ||
		    jpath_get(pv, "metadata", "deletionTimestamp"))
			continue;
		v = volume_at(res, path);
		if (!v) {
			/* Nothing here to clean: deleting the PV would lose track of the data. */
			log_debug("PV '%s' is released but its volume \"%s\" is not here", name, path);
			continue;
		}
		if (!retryset_due(st->clean_retries, name, NULL, clock_now_ns())) {
			log_debug("PV '%s': cleaning failed recently; waiting before the next try",
				  name);
			continue;
		}
		log_info("PV '%s' released: cleaning \"%s\"", name, v->mount_path);
		start = clock_now_ns();
		metrics_delete_started();
		r = cleaner_clean(&(struct cleaner_target){
			.mount_path = v->mount_path,
			.is_block = v->is_block,
			.fstype = v->fstype,
			.source = v->source,
			.block_cleaner_command = v->cls->block_cleaner_command,
			.carvefs_socket = st->opt.carvefs_socket });
		if (r < 0) {
			metrics_delete_done(v->is_block, false, clock_now_ns() - start);
			log_warn("PV '%s': cleaning failed; trying again in %.0f s", name,
				 (double)retryset_failed(st->clean_retries, name, NULL, clock_now_ns()) /
					 1e9);
			errors++;
			continue;
		}
		retryset_succeeded(st->clean_retries, name);
		r = sink_remove(st->sink, name);
		metrics_delete_done(v->is_block, r >= 0 || r == -ENOENT, clock_now_ns() - start);
		if (r < 0 && r != -ENOENT) {
			log_error_errno(r, "PV '%s': cleaned, but cannot delete it", name);
			errors++;
			continue;
		}
		log_info("PV '%s': volume cleaned and PV deleted; it is registered again next pass",
			 name);
	}
	/* The PVs not looked at are gone or no longer released: their failures are moot. */
	retryset_sweep(st->clean_retries);
	return errors;
}

/* Records the duration of a discovery pass under each volume mode it covered. */
static void record_pass(const struct prov_config *cfg, uint64_t ns)
{
	bool seen[2] = { false, false };

	for (size_t i = 0; i < cfg->n_classes; i++) {
		bool block = cfg->classes[i].volume_mode == PROV_MODE_BLOCK;

		if (!seen[block])
			metrics_discovery_pass(block, ns);
		seen[block] = true;
	}
}

/* Returns 0 if the pass went through, -EIO if anything in it failed (logged). */
static int run_pass(struct state *st)
{
	struct disc_result *res = NULL;
	json_t *node = NULL, *pvs = NULL, *pv;
	const char *hostname;
	char *prov = NULL;
	unsigned errors = 0;
	uint64_t start = clock_now_ns();
	size_t i;
	int r;

	r = discovery_scan(st->disc, st->cfg, NULL, &res);
	if (r < 0) {
		log_error_errno(r, "discovery failed");
		goto out;
	}
	errors += res->n_errors;
	r = sink_get_node(st->sink, st->node_name, &node);
	if (r < 0) {
		log_error_errno(r, "cannot get node '%s'", st->node_name);
		goto out;
	}
	if (!node && st->cfg->set_pv_owner_ref && !st->warned_owner_ref) {
		log_warn("setPVOwnerRef needs the Node's uid from the cluster: ignored with the %s sink",
			 st->sink->ops->kind);
		st->warned_owner_ref = true;
	}
	hostname = pv_node_hostname(st->node_name, node);
	if (!hostname) {
		log_error("node '%s' has no %s label", st->node_name, PV_LABEL_HOSTNAME);
		r = -ENODATA;
		goto out;
	}
	r = pv_provisioner_name(st->node_name, node, st->cfg->use_node_name_only, &prov);
	if (r < 0)
		goto out;
	r = sink_list(st->sink, &pvs);
	if (r < 0) {
		log_error_errno(r, "cannot list the PVs of the %s sink", st->sink->ops->kind);
		goto out;
	}
	errors += release_volumes(st, res, hostname, prov, pvs);
	/* Before registration: it learns which volumes belong to claims. */
	if (st->dyn) {
		errors += dynamic_pass(st->dyn, hostname, provconfig_overcommit(st->cfg));
		if (st->claim_watch && dynamic_in_use(st->dyn))
			kwatch_enable(st->claim_watch);
	}
	for (i = 0; i < res->n_volumes; i++) {
		r = register_volume(st, &res->volumes[i], node, hostname, pvs);
		if (r == -ENOMEM)
			goto out;
		if (r < 0)
			errors++;
	}
	if (st->expand) {
		r = expand_pass(st->expand,
				&(struct expand_input){ .pvs = pvs,
							.hostname = hostname,
							.provisioner = prov,
							.res = res,
							.overcommit = provconfig_overcommit(st->cfg) });
		if (r == -ENOMEM)
			goto out;
		if (r != 0)
			errors++;
	}
	/*
	 * After everything that carves or grows volumes. Not a pass error when
	 * it fails: a node may serve plain disks without a carvefs daemon.
	 */
	if (st->nodecap && node) {
		uint64_t room;

		r = nodecap_update(st->nodecap, st->node_name, node,
				   provconfig_overcommit(st->cfg), &room);
		if (r == -ENOMEM)
			goto out;
		if (room != NODECAP_UNMEASURED && st->storagecap && st->dyn) {
			r = storagecap_update(st->storagecap, hostname, dynamic_classes(st->dyn),
					      room);
			if (r == -ENOMEM)
				goto out;
		}
	}

	/*
	 * Only a complete discovery can say a volume is gone: after an error a
	 * missing volume may merely be one that could not be examined.
	 */
	if (st->sink->ops->remove_vanished && res->n_errors == 0) {
		json_array_foreach(pvs, i, pv)
		{
			const char *by = pv_get_provisioned_by(pv), *path = pv_get_path(pv);

			if (!by || strcmp(by, prov) != 0 || !path || !pv_on_node(pv, hostname) ||
			    volume_present(res, path))
				continue;
			r = sink_remove(st->sink, pv_get_name(pv));
			if (r < 0 && r != -ENOENT) {
				log_error_errno(r, "cannot remove PV '%s'", pv_get_name(pv));
				errors++;
				continue;
			}
			log_info("removed PV '%s': no volume at \"%s\" any more", pv_get_name(pv),
				 path);
		}
	}
	r = errors > 0 ? -EIO : 0;
out:
	if (res)
		record_pass(st->cfg, clock_now_ns() - start);
	discovery_result_free(res);
	json_decref(node);
	json_decref(pvs);
	free(prov);
	return r;
}

/* ---- start-up ----------------------------------------------------------- */

/* --namespace, else $MY_POD_NAMESPACE (the DaemonSet sets it), else the default. */
static const char *default_namespace(const char *opt)
{
	const char *env = getenv("MY_POD_NAMESPACE");

	if (opt)
		return opt;
	return env && env[0] != '\0' ? env : STORAGECAP_DEFAULT_NAMESPACE;
}

static char *default_node_name(void)
{
	const char *env = getenv("MY_NODE_NAME");
	char host[256];

	if (env && env[0] != '\0')
		return strdup(env);
	if (gethostname(host, sizeof(host)) < 0)
		return NULL;
	host[sizeof(host) - 1] = '\0';
	/* The kubelet registers a node under its hostname in lowercase. */
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return strdup(host);
}

/*
 * Picks the sink from the options: the api sink (*ret_api) for --sink api,
 * or without --sink when there are credentials (--kubeconfig, or the
 * in-cluster environment); else the dir sink, *ret_path the manifest
 * directory. Returns 0, or EXIT_USAGE for a malformed choice (logged).
 */
static int choose_sink(const struct options *o, const char **ret_path, bool *ret_api)
{
	const char *sink = o->sink, *path = DIRSINK_DEFAULT_PATH;

	*ret_api = false;
	if ((sink && strcmp(sink, "api") == 0) ||
	    (!sink && (o->kubeconfig || getenv("KUBERNETES_SERVICE_HOST")))) {
		*ret_api = true;
		return 0;
	}
	if (sink && strcmp(sink, "dir") != 0) {
		if (strncmp(sink, "dir:", 4) != 0 || sink[4] == '\0') {
			log_error("--sink: expected api, dir or dir:PATH, not '%s'", sink);
			return EXIT_USAGE;
		}
		path = sink + 4;
	}
	if (o->kubeconfig)
		log_warn("--kubeconfig is ignored by the dir sink");
	*ret_path = path;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum {
		OPT_CONFIG = 0x100,
		OPT_NODE,
		OPT_KUBECONFIG,
		OPT_SINK,
		OPT_PERIOD,
		OPT_LISTEN,
		OPT_SOCKET,
		OPT_NAMESPACE,
		OPT_ONCE,
		OPT_LOG_LEVEL,
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "node", required_argument, NULL, OPT_NODE },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "sink", required_argument, NULL, OPT_SINK },
		{ "discovery-period", required_argument, NULL, OPT_PERIOD },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "carvefs-socket", required_argument, NULL, OPT_SOCKET },
		{ "namespace", required_argument, NULL, OPT_NAMESPACE },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum log_level level;
	int c, r;

	*o = (struct options){ .config_dir = PROVCONFIG_DEFAULT_DIR,
			       .period_ns = DEFAULT_PERIOD_NS,
			       .carvefs_socket = WIRE_DEFAULT_SOCKET };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG:
			o->config_dir = optarg;
			break;
		case OPT_NODE:
			o->node = optarg;
			break;
		case OPT_KUBECONFIG:
			o->kubeconfig = optarg;
			break;
		case OPT_NAMESPACE:
			o->namespace = optarg;
			break;
		case OPT_SINK:
			o->sink = optarg;
			break;
		case OPT_PERIOD:
			r = duration_parse(optarg, &o->period_ns);
			if (r < 0 || o->period_ns == 0) {
				log_error("--discovery-period: '%s' is not a positive duration (e.g. 10s, 1m)",
					  optarg);
				return -EINVAL;
			}
			break;
		case OPT_LISTEN:
			o->listen = optarg;
			break;
		case OPT_SOCKET:
			o->carvefs_socket = optarg;
			break;
		case OPT_ONCE:
			o->once = true;
			break;
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &level) < 0) {
				log_error("--log-level: expected error, warn, info or debug, not '%s'",
					  optarg);
				return -EINVAL;
			}
			log_set_level(level);
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_SUCCESS);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/*
 * Opens the api sink with --kubeconfig or the in-cluster credentials, and
 * a second client on them into *ret_kube. With @ret_watch, also the PV
 * watch, and the watch of claims selected for @node into *ret_claim_watch.
 * Logs.
 */
/* A PV turned Released (to clean) or gone (to register its volume afresh). */
static bool pv_event_wanted(const char *type, const json_t *pv, void *userdata)
{
	const char *phase = jpath_str(pv, "status", "phase");

	(void)userdata;
	return strcmp(type, "DELETED") == 0 ||
	       (strcmp(type, "MODIFIED") == 0 && phase && strcmp(phase, "Released") == 0);
}

/*
 * A claim this node is to provision or grow. Only those: waking for every
 * claim of a large cluster would turn the period into a busy loop.
 */
static bool claim_event_wanted(const char *type, const json_t *claim, void *node_name)
{
	if (strcmp(type, "DELETED") == 0 || strcmp(type, "BOOKMARK") == 0)
		return false;
	return dynspec_claim_wanted(claim, node_name) || dynspec_claim_grows(claim, node_name);
}

static int open_api_sink(const struct options *o, struct sink **ret_sink,
			 struct kwatch **ret_watch, struct kube **ret_kube, const char *node,
			 struct kwatch **ret_claim_watch)
{
	const struct kwatch_spec pv_watch = {
		.what = "PV",
		.collection = "/api/v1/persistentvolumes",
		.wanted = pv_event_wanted,
	};
	/*
	 * Paused until a StorageClass of carvefs's exists: a node in a
	 * cluster without one keeps no watch on every claim.
	 */
	const struct kwatch_spec claim_watch = {
		.what = "claim",
		.collection = "/api/v1/persistentvolumeclaims",
		.wanted = claim_event_wanted,
		.userdata = (void *)node,
		.start_paused = true,
	};
	struct kubeconfig *kc = NULL;
	int r;

	if (o->kubeconfig) {
		r = kube_config_load(o->kubeconfig, &kc);
	} else {
		r = kube_config_in_cluster(&kc);
		if (r == -ENOENT)
			log_error("the api sink needs --kubeconfig outside a cluster "
				  "(KUBERNETES_SERVICE_HOST is not set)");
	}
	if (r < 0)
		goto cleanup;
	r = apisink_open(kc, ret_sink);
	if (r < 0) {
		log_error_errno(r, "cannot set up the Kubernetes API client");
		goto cleanup;
	}
	log_info("registering PVs with the Kubernetes API at %s%s", kc->server,
		 o->kubeconfig ? "" : " (in-cluster)");
	r = kube_new(kc, ret_kube);
	if (r < 0) {
		log_error_errno(r, "cannot set up the Kubernetes API client");
		goto cleanup;
	}
	if (ret_watch) {
		r = kwatch_start(kc, &pv_watch, ret_watch);
		if (r < 0) {
			/* Not fatal: the period still finds every change, only later. */
			log_warn_errno(r, "cannot watch PVs; changes are seen at the next pass");
			*ret_watch = NULL;
			r = 0;
		}
		r = kwatch_start(kc, &claim_watch, ret_claim_watch);
		if (r < 0) {
			log_warn_errno(r, "cannot watch claims; they are served at the next pass");
			*ret_claim_watch = NULL;
			r = 0;
		}
	}
cleanup:
	kubeconfig_free(kc);
	return r;
}

/* ---- the loop ----------------------------------------------------------- */

static void drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Watches the config directory; -1 if it cannot (the period still reloads it). */
static int watch_config(const char *dir)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0)
		return -1;
	if (inotify_add_watch(fd, dir,
			      IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
				      IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
		log_warn_errno(-errno, "cannot watch \"%s\"; changes are seen at the next pass", dir);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Waits until the next pass is due. Returns 1 for a pass (the period is
 * over, SIGHUP, or the configuration changed), 0 to stop (SIGTERM/SIGINT).
 */
static int wait_next(struct state *st, int sig_fd, int *ino_fd, uint64_t deadline_ns)
{
	for (;;) {
		/* An fd of -1 is ignored by poll(): no config watch, or no PV or claim watch. */
		struct pollfd fds[4] = { { .fd = sig_fd, .events = POLLIN },
					 { .fd = *ino_fd, .events = POLLIN },
					 { .fd = st->watch ? kwatch_fd(st->watch) : -1,
					   .events = POLLIN },
					 { .fd = st->claim_watch ? kwatch_fd(st->claim_watch) : -1,
					   .events = POLLIN } };
		uint64_t now = clock_now_ns();
		int timeout_ms, n;

		if (now >= deadline_ns) {
			if (config_reload(st) < 0)
				return 0;
			return 1;
		}
		timeout_ms = (int)((deadline_ns - now + 999999) / 1000000);
		n = poll(fds, 4, timeout_ms);
		if (n < 0 && errno != EINTR) {
			log_error_errno(-errno, "poll");
			return 0;
		}
		if (n <= 0)
			continue;
		if (fds[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					log_info("SIGHUP: reloading and discovering now");
					config_reload(st);
					return 1;
				}
				log_info("%s: stopping", strsignal((int)si.ssi_signo));
				return 0;
			}
		}
		if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) {
			drain(fds[2].fd);
			log_debug("a PV was released or deleted: discovering now");
			return 1;
		}
		if (fds[3].fd >= 0 && (fds[3].revents & POLLIN)) {
			drain(fds[3].fd);
			log_debug("a claim was handed to this node: provisioning now");
			return 1;
		}
		if (*ino_fd >= 0 && (fds[1].revents & POLLIN)) {
			struct pollfd settle = { .fd = *ino_fd, .events = POLLIN };

			/* Let a ConfigMap update or an editor's save finish first. */
			do
				drain(*ino_fd);
			while (poll(&settle, 1, CONFIG_SETTLE_MS) > 0);
			if (config_reload(st) > 0)
				return 1;
		}
	}
}

int main(int argc, char **argv)
{
	struct state st = { 0 };
	const char *sink_path = NULL;
	bool use_api = false;
	sigset_t mask;
	int sig_fd = -1, ino_fd = -1, r, ret = EXIT_FAILURE;

	log_init("carve-provisioner", LOG_LEVEL_INFO);
	if (parse_options(argc, argv, &st.opt) < 0)
		return EXIT_USAGE;
	st.node_name = st.opt.node ? strdup(st.opt.node) : default_node_name();
	if (!st.node_name || st.node_name[0] == '\0') {
		log_error("no node name: pass --node or set MY_NODE_NAME");
		goto out;
	}
	if (discovery_new(&st.disc) < 0 ||
	    retryset_new(CLEAN_RETRY_BASE_NS, CLEAN_RETRY_CAP_NS, 0, clock_now_ns() ^ (uint64_t)getpid(),
			 &st.clean_retries) < 0) {
		log_error("out of memory");
		goto out;
	}
	if (choose_sink(&st.opt, &sink_path, &use_api) != 0) {
		ret = EXIT_USAGE;
		goto out;
	}
	/* The configuration first: a node without one should not grow a manifest directory. */
	if (config_reload(&st) < 0)
		goto out;
	if (use_api) {
		if (open_api_sink(&st.opt, &st.sink, st.opt.once ? NULL : &st.watch, &st.kube,
				  st.node_name, &st.claim_watch) < 0)
			goto out;
		if (dynamic_new(st.kube, st.node_name, st.opt.carvefs_socket, &st.dyn) < 0) {
			log_error("out of memory");
			goto out;
		}
		if (expand_new(st.kube, st.opt.carvefs_socket, &st.expand) < 0 ||
		    nodecap_new(st.kube, st.opt.carvefs_socket, &st.nodecap) < 0 ||
		    storagecap_new(st.kube, default_namespace(st.opt.namespace), &st.storagecap) < 0 ||
		    event_set_host(st.node_name) < 0) {
			log_error("out of memory");
			goto out;
		}
	} else {
		r = dirsink_open(sink_path, &st.sink);
		if (r < 0) {
			log_error_errno(r, "cannot open the manifest directory \"%s\"", sink_path);
			goto out;
		}
		log_info("writing PV manifests to \"%s\"", sink_path);
	}
	log_info("node '%s'%s", st.node_name, st.opt.once ? ", one pass" : "");

	if (st.opt.once) {
		ret = run_pass(&st) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
		goto out;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		log_error_errno(-errno, "cannot set up signal handling");
		goto out;
	}
	/* A closed probe connection must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	if (st.opt.listen) {
		r = health_start(st.opt.listen, &st.health);
		if (r < 0) {
			log_error_errno(r, "--listen %s", st.opt.listen);
			goto out;
		}
		log_info("serving /healthz, /readyz and /metrics on %s", st.opt.listen);
	}
	ino_fd = watch_config(st.opt.config_dir);

	for (;;) {
		uint64_t start = clock_now_ns();

		r = run_pass(&st);
		health_set_ready(st.health, r == 0);
		if (wait_next(&st, sig_fd, &ino_fd, start + st.opt.period_ns) == 0)
			break;
	}
	ret = EXIT_SUCCESS;
out:
	if (ino_fd >= 0)
		close(ino_fd);
	if (sig_fd >= 0)
		close(sig_fd);
	kwatch_stop(st.claim_watch);
	kwatch_stop(st.watch);
	dynamic_free(st.dyn);
	expand_free(st.expand);
	nodecap_free(st.nodecap);
	storagecap_free(st.storagecap);
	kube_free(st.kube);
	retryset_free(st.clean_retries);
	health_stop(st.health);
	discovery_free(st.disc);
	sink_free(st.sink);
	provconfig_free(st.cfg);
	provconfig_snapshot_free(st.seen);
	free(st.node_name);
	event_set_host(NULL);
	return ret;
}
