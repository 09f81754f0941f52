/* lv2host: a minimal offline LV2 host for the bench (bench/peers.py compiles and drives it).

   lv2host --list URI [SAMPLE_RATE]
       Prints every port (index, symbol, kind, default/min/max, properties, scale points) and the
       latency the plugin reports after one run() of silence with default controls.
   lv2host URI IN.raw OUT.raw CHANNELS SAMPLE_RATE [--tail N] [--block N] [symbol=value ...]
       Reads raw float32 interleaved audio (CHANNELS channels), runs it through the plugin in blocks
       of 512 frames (the last one shorter), then N more frames of silence (--tail, default 0) so the
       plugin's latency can be flushed, and writes OUT.raw (float32 interleaved, input frames + N).
       Prints "latency=<frames>" (the reportsLatency port after the first run(), -1 if none).

   Host features: urid:map, urid:unmap, options:options (buf-size min/max/nominal block length,
   sequenceSize, param:sampleRate), buf-size:boundedBlockLength. Atom input ports get an empty
   atom:Sequence each block; atom output ports get a buffer whose capacity is reset each block.
   Exit status 2 on bad arguments or a plugin that cannot be hosted (one-line message on stderr). */

#include <lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/core/lv2.h>
#include <lv2/options/options.h>
#include <lv2/parameters/parameters.h>
#include <lv2/urid/urid.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOM_CAPACITY 8192

enum kind { K_AUDIO_IN, K_AUDIO_OUT, K_CONTROL_IN, K_CONTROL_OUT, K_ATOM_IN, K_ATOM_OUT, K_CV, K_OTHER };
static const char *KIND_NAMES[] = {"audio-in", "audio-out", "control-in", "control-out",
                                   "atom-in", "atom-out", "cv", "other"};

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lv2host: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- urid map: a growing table of URI strings, URID = index + 1 ---- */
static char **uris;
static uint32_t n_uris;

static LV2_URID map_uri(LV2_URID_Map_Handle handle, const char *uri) {
    (void)handle;
    for (uint32_t i = 0; i < n_uris; i++)
        if (strcmp(uris[i], uri) == 0) return i + 1;
    uris = realloc(uris, (n_uris + 1) * sizeof(char *));
    uris[n_uris] = strdup(uri);
    return ++n_uris;
}

static const char *unmap_uri(LV2_URID_Unmap_Handle handle, LV2_URID urid) {
    (void)handle;
    return (urid >= 1 && urid <= n_uris) ? uris[urid - 1] : NULL;
}

/* ---- lilv nodes used for port classification ---- */
struct nodes {
    LilvNode *audio, *control, *atom, *cv, *input, *output, *reports_latency, *latency_designation;
    LilvNode *integer, *toggled, *enumeration;
};

static struct nodes make_nodes(LilvWorld *w) {
    struct nodes n;
    n.audio = lilv_new_uri(w, LV2_CORE__AudioPort);
    n.control = lilv_new_uri(w, LV2_CORE__ControlPort);
    n.atom = lilv_new_uri(w, LV2_ATOM__AtomPort);
    n.cv = lilv_new_uri(w, LV2_CORE__CVPort);
    n.input = lilv_new_uri(w, LV2_CORE__InputPort);
    n.output = lilv_new_uri(w, LV2_CORE__OutputPort);
    n.reports_latency = lilv_new_uri(w, LV2_CORE__reportsLatency);
    n.latency_designation = lilv_new_uri(w, LV2_CORE__latency);
    n.integer = lilv_new_uri(w, LV2_CORE__integer);
    n.toggled = lilv_new_uri(w, LV2_CORE__toggled);
    n.enumeration = lilv_new_uri(w, LV2_CORE__enumeration);
    return n;
}

static enum kind port_kind(const LilvPlugin *p, const LilvPort *port, const struct nodes *n) {
    int in = lilv_port_is_a(p, port, n->input);
    if (lilv_port_is_a(p, port, n->audio)) return in ? K_AUDIO_IN : K_AUDIO_OUT;
    if (lilv_port_is_a(p, port, n->control)) return in ? K_CONTROL_IN : K_CONTROL_OUT;
    if (lilv_port_is_a(p, port, n->atom)) return in ? K_ATOM_IN : K_ATOM_OUT;
    if (lilv_port_is_a(p, port, n->cv)) return K_CV;
    return K_OTHER;
}

/* Index of the port reporting latency (reportsLatency property or lv2:latency designation), or -1. */
static int latency_port(const LilvPlugin *p, const struct nodes *n, const enum kind *kinds) {
    uint32_t count = lilv_plugin_get_num_ports(p);
    for (uint32_t i = 0; i < count; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
        if (kinds[i] != K_CONTROL_OUT) continue;
        if (lilv_port_has_property(p, port, n->reports_latency)) return (int)i;
        const LilvNode *sym = lilv_port_get_symbol(p, port);
        if (strcmp(lilv_node_as_string(sym), "latency") == 0) return (int)i;
    }
    const LilvPort *port = lilv_plugin_get_port_by_designation(p, n->output, n->latency_designation);
    return port ? (int)lilv_port_get_index(p, port) : -1;
}

/* ---- the host: features, buffers, one instance ---- */
struct host {
    const LilvPlugin *plugin;
    LilvInstance *instance;
    uint32_t n_ports, block;
    enum kind *kinds;
    float *controls;                 /* one value per port (controls and scratch outputs) */
    float **audio;                   /* per-port audio buffers (block frames) */
    LV2_Atom_Sequence **atoms;       /* per-port atom buffers */
    int latency_index;
    LV2_URID atom_sequence, atom_chunk;
};

static void print_ports(const LilvPlugin *p, const struct nodes *n, const enum kind *kinds, int lat) {
    uint32_t count = lilv_plugin_get_num_ports(p);
    for (uint32_t i = 0; i < count; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
        LilvNode *def = NULL, *min = NULL, *max = NULL;
        lilv_port_get_range(p, port, &def, &min, &max);
        printf("port %u %s %s", i, lilv_node_as_string(lilv_port_get_symbol(p, port)), KIND_NAMES[kinds[i]]);
        if (def) printf(" default=%g", lilv_node_as_float(def));
        if (min) printf(" min=%g", lilv_node_as_float(min));
        if (max) printf(" max=%g", lilv_node_as_float(max));
        if (lilv_port_has_property(p, port, n->integer)) printf(" integer");
        if (lilv_port_has_property(p, port, n->toggled)) printf(" toggled");
        if (lilv_port_has_property(p, port, n->enumeration)) printf(" enumeration");
        if ((int)i == lat) printf(" reports-latency");
        LilvNode *name = lilv_port_get_name(p, port);
        printf(" name=\"%s\"\n", name ? lilv_node_as_string(name) : "");
        lilv_node_free(name);
        lilv_node_free(def);
        lilv_node_free(min);
        lilv_node_free(max);
        LilvScalePoints *points = lilv_port_get_scale_points(p, port);
        if (!points) continue;
        LILV_FOREACH (scale_points, it, points) {
            const LilvScalePoint *sp = lilv_scale_points_get(points, it);
            printf("  point %g \"%s\"\n", lilv_node_as_float(lilv_scale_point_get_value(sp)),
                   lilv_node_as_string(lilv_scale_point_get_label(sp)));
        }
        lilv_scale_points_free(points);
    }
}

/* Fail with a clear message when the plugin requires a feature that `features` lacks. */
static void check_features(const LilvPlugin *p, const LV2_Feature *const *features) {
    LilvNodes *required = lilv_plugin_get_required_features(p);
    LILV_FOREACH (nodes, it, required) {
        const char *uri = lilv_node_as_uri(lilv_nodes_get(required, it));
        int found = 0;
        for (const LV2_Feature *const *f = features; *f; f++)
            if (strcmp((*f)->URI, uri) == 0) found = 1;
        if (!found) die("plugin requires the feature %s, which this host does not provide", uri);
    }
    lilv_nodes_free(required);
}

/* Set every control input to its default (or minimum, or 0) and scratch outputs to 0. */
static void default_controls(struct host *h) {
    float *min = calloc(h->n_ports, sizeof(float)), *max = calloc(h->n_ports, sizeof(float));
    float *def = calloc(h->n_ports, sizeof(float));
    lilv_plugin_get_port_ranges_float(h->plugin, min, max, def);
    for (uint32_t i = 0; i < h->n_ports; i++) {
        float v = def[i];
        if (isnan(v)) v = isnan(min[i]) ? 0.0f : min[i];
        h->controls[i] = (h->kinds[i] == K_CONTROL_IN) ? v : 0.0f;
    }
    free(min);
    free(max);
    free(def);
}

/* Parse "symbol=value" and set that control input; fail on an unknown or non-control symbol. */
static void set_control(struct host *h, LilvWorld *w, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq) die("expected symbol=value, got '%s'", arg);
    char *symbol = strndup(arg, (size_t)(eq - arg));
    char *end;
    float value = strtof(eq + 1, &end);
    if (end == eq + 1 || *end) die("bad value in '%s'", arg);
    LilvNode *sym = lilv_new_string(w, symbol);
    const LilvPort *port = lilv_plugin_get_port_by_symbol(h->plugin, sym);
    lilv_node_free(sym);
    if (!port) die("the plugin has no port '%s'", symbol);
    uint32_t i = lilv_port_get_index(h->plugin, port);
    if (h->kinds[i] != K_CONTROL_IN) die("port '%s' is not a control input", symbol);
    h->controls[i] = value;
    free(symbol);
}

static void connect_all(struct host *h) {
    for (uint32_t i = 0; i < h->n_ports; i++) {
        switch (h->kinds[i]) {
        case K_AUDIO_IN: case K_AUDIO_OUT: case K_CV:
            h->audio[i] = calloc(h->block, sizeof(float));
            lilv_instance_connect_port(h->instance, i, h->audio[i]);
            break;
        case K_ATOM_IN: case K_ATOM_OUT:
            h->atoms[i] = calloc(1, ATOM_CAPACITY);
            lilv_instance_connect_port(h->instance, i, h->atoms[i]);
            break;
        case K_CONTROL_IN: case K_CONTROL_OUT:
            lilv_instance_connect_port(h->instance, i, &h->controls[i]);
            break;
        default:
            die("port %u has a type this host cannot connect", i);
        }
    }
}

/* Reset atom buffers: inputs to an empty sequence, outputs to an empty chunk of full capacity. */
static void reset_atoms(struct host *h) {
    for (uint32_t i = 0; i < h->n_ports; i++) {
        LV2_Atom_Sequence *seq = h->atoms[i];
        if (h->kinds[i] == K_ATOM_IN) {
            seq->atom.type = h->atom_sequence;
            seq->atom.size = sizeof(LV2_Atom_Sequence_Body);
            seq->body.unit = 0;
            seq->body.pad = 0;
        } else if (h->kinds[i] == K_ATOM_OUT) {
            seq->atom.type = h->atom_chunk;
            seq->atom.size = ATOM_CAPACITY - sizeof(LV2_Atom);
        }
    }
}

/* Run one block of `frames` frames: audio inputs from interleaved `in` (NULL: silence), outputs to `out`. */
static void run_block(struct host *h, const float *in, float *out, uint32_t frames, uint32_t channels) {
    uint32_t c = 0;
    for (uint32_t i = 0; i < h->n_ports; i++) {
        if (h->kinds[i] != K_AUDIO_IN) continue;
        for (uint32_t t = 0; t < frames; t++) h->audio[i][t] = in ? in[t * channels + c] : 0.0f;
        c++;
    }
    reset_atoms(h);
    lilv_instance_run(h->instance, frames);
    c = 0;
    for (uint32_t i = 0; i < h->n_ports; i++) {
        if (h->kinds[i] != K_AUDIO_OUT) continue;
        for (uint32_t t = 0; t < frames; t++) out[t * channels + c] = h->audio[i][t];
        c++;
    }
}

static float *read_raw(const char *path, uint32_t channels, size_t *frames) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t frame_bytes = channels * sizeof(float);
    if (bytes < 0 || bytes % (long)frame_bytes) die("%s is not raw float32 with %u channels", path, channels);
    *frames = (size_t)bytes / frame_bytes;
    float *data = malloc(bytes ? (size_t)bytes : 1);
    if (fread(data, 1, (size_t)bytes, f) != (size_t)bytes) die("cannot read %s", path);
    fclose(f);
    return data;
}

static uint32_t count_kind(const struct host *h, enum kind k) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < h->n_ports; i++) n += h->kinds[i] == k;
    return n;
}

static long parse_long(const char *s, const char *what, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) die("bad %s '%s' (expected an integer in %ld..%ld)", what, s, lo, hi);
    return v;
}

static void usage(void) {
    die("usage: lv2host --list URI [SAMPLE_RATE] | lv2host URI IN.raw OUT.raw CHANNELS SAMPLE_RATE "
        "[--tail N] [--block N] [symbol=value ...]");
}

int main(int argc, char **argv) {
    int list = argc >= 3 && strcmp(argv[1], "--list") == 0;
    if (!list && argc < 6) usage();
    const char *uri = list ? argv[2] : argv[1];
    double rate = list ? (argc > 3 ? (double)parse_long(argv[3], "sample rate", 1, 1000000) : 48000.0)
                       : (double)parse_long(argv[5], "sample rate", 1, 1000000);
    uint32_t channels = list ? 0 : (uint32_t)parse_long(argv[4], "channel count", 1, 64);
    long tail = 0, block = 512;
    int first_setting = 6;
    while (!list && first_setting + 1 < argc && strncmp(argv[first_setting], "--", 2) == 0) {
        if (strcmp(argv[first_setting], "--tail") == 0)
            tail = parse_long(argv[first_setting + 1], "tail", 0, 100000000);
        else if (strcmp(argv[first_setting], "--block") == 0)
            block = parse_long(argv[first_setting + 1], "block", 1, 1 << 20);
        else
            usage();
        first_setting += 2;
    }

    LilvWorld *world = lilv_world_new();
    lilv_world_load_all(world);
    LilvNode *uri_node = lilv_new_uri(world, uri);
    const LilvPlugin *plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri_node);
    if (!plugin) die("no installed LV2 plugin has the URI %s (see lv2ls)", uri);
    struct nodes n = make_nodes(world);

    struct host h = {.plugin = plugin, .block = (uint32_t)block};
    h.n_ports = lilv_plugin_get_num_ports(plugin);
    h.kinds = calloc(h.n_ports, sizeof(enum kind));
    for (uint32_t i = 0; i < h.n_ports; i++)
        h.kinds[i] = port_kind(plugin, lilv_plugin_get_port_by_index(plugin, i), &n);
    h.latency_index = latency_port(plugin, &n, h.kinds);
    h.controls = calloc(h.n_ports, sizeof(float));
    h.audio = calloc(h.n_ports, sizeof(float *));
    h.atoms = calloc(h.n_ports, sizeof(LV2_Atom_Sequence *));
    h.atom_sequence = map_uri(NULL, LV2_ATOM__Sequence);
    h.atom_chunk = map_uri(NULL, LV2_ATOM__Chunk);
    if (list) print_ports(plugin, &n, h.kinds, h.latency_index);

    /* features */
    LV2_URID_Map map = {NULL, map_uri};
    LV2_URID_Unmap unmap = {NULL, unmap_uri};
    int32_t min_block = 1, max_block = (int32_t)block, nominal_block = (int32_t)block, seq_size = ATOM_CAPACITY;
    float sample_rate = (float)rate;
    LV2_URID atom_int = map_uri(NULL, LV2_ATOM__Int), atom_float = map_uri(NULL, LV2_ATOM__Float);
    LV2_Options_Option options[] = {
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__minBlockLength), sizeof(int32_t), atom_int, &min_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), atom_int, &max_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__nominalBlockLength), sizeof(int32_t), atom_int,
         &nominal_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__sequenceSize), sizeof(int32_t), atom_int, &seq_size},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_PARAMETERS__sampleRate), sizeof(float), atom_float,
         &sample_rate},
        {LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL},
    };
    LV2_Feature f_map = {LV2_URID__map, &map}, f_unmap = {LV2_URID__unmap, &unmap};
    LV2_Feature f_options = {LV2_OPTIONS__options, options}, f_bounded = {LV2_BUF_SIZE__boundedBlockLength, NULL};
    const LV2_Feature *features[] = {&f_map, &f_unmap, &f_options, &f_bounded, NULL};
    check_features(plugin, features);

    h.instance = lilv_plugin_instantiate(plugin, rate, features);
    if (!h.instance) die("%s failed to instantiate at %g Hz", uri, rate);
    default_controls(&h);
    for (int i = first_setting; !list && i < argc; i++) set_control(&h, world, argv[i]);
    connect_all(&h);

    uint32_t n_in = count_kind(&h, K_AUDIO_IN), n_out = count_kind(&h, K_AUDIO_OUT);
    if (!list && (n_in != channels || n_out != channels))
        die("%s has %u audio inputs and %u outputs, the input has %u channels", uri, n_in, n_out, channels);
    lilv_instance_activate(h.instance);

    float latency = -1.0f;
    if (list) {
        float *scratch = calloc((size_t)h.block * (n_out ? n_out : 1), sizeof(float));
        run_block(&h, NULL, scratch, h.block, n_out ? n_out : 1);
        if (h.latency_index >= 0) latency = h.controls[h.latency_index];
        printf("audio-inputs=%u audio-outputs=%u\nlatency=%g\n", n_in, n_out, latency);
        free(scratch);
    } else {
        size_t frames;
        float *in = read_raw(argv[2], channels, &frames);
        size_t total = frames + (size_t)tail;
        float *out = calloc(total * channels + 1, sizeof(float));
        for (size_t start = 0; start < total; start += h.block) {
            uint32_t len = (uint32_t)((total - start < h.block) ? total - start : h.block);
            uint32_t live = start >= frames ? 0 : (uint32_t)((frames - start < len) ? frames - start : len);
            if (live == len) {
                run_block(&h, in + start * channels, out + start * channels, len, channels);
            } else { /* the block straddling the end of the input: zero-pad it */
                float *pad = calloc((size_t)len * channels, sizeof(float));
                if (live) memcpy(pad, in + start * channels, (size_t)live * channels * sizeof(float));
                run_block(&h, pad, out + start * channels, len, channels);
                free(pad);
            }
            if (start == 0 && h.latency_index >= 0) latency = h.controls[h.latency_index];
        }
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(out, sizeof(float), total * channels, f) != total * channels)
            die("cannot write %s", argv[3]);
        fclose(f);
        printf("latency=%g\n", latency);
        free(in);
        free(out);
    }
    lilv_instance_deactivate(h.instance);
    lilv_instance_free(h.instance);
    lilv_world_free(world);
    return 0;
}
