package deploy

import (
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/connaudit/connaudit/caps"
)

// The DaemonSet is what issue 9 asks for, and agrees with the agent: the
// capabilities it adds are exactly those the agent checks for at start, and
// the paths it mounts are the paths its environment gives the agent.
func TestAgentDaemonSet(t *testing.T) {
	ds := render(t, "k8s/deploy").daemonSet(t, "connaudit-agent")
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers; want the agent only", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext

	var wantAdd []corev1.Capability
	for _, n := range append(caps.Agent[:len(caps.Agent):len(caps.Agent)], caps.DNS) {
		wantAdd = append(wantAdd, corev1.Capability(strings.TrimPrefix(n.Name, "CAP_")))
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, wantAdd) {
		t.Errorf("capabilities drop %v add %v; want drop [ALL] add %v (caps.Agent and caps.DNS: DNS capture is on by default)", sc.Capabilities.Drop, sc.Capabilities.Add, wantAdd)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"not privileged", sc.Privileged != nil && !*sc.Privileged},
		{"runAsUser 0 (added capabilities take effect for uid 0 only)", sc.RunAsUser != nil && *sc.RunAsUser == 0},
		{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"SELinux spc_t", sc.SELinuxOptions != nil && sc.SELinuxOptions.Type == "spc_t"},
		{"seccomp RuntimeDefault", spec.SecurityContext.SeccompProfile != nil && spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"AppArmor Unconfined", spec.SecurityContext.AppArmorProfile != nil && spec.SecurityContext.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined},
		{"no hostPID", !spec.HostPID},
		{"no hostNetwork", !spec.HostNetwork},
		{"no hostIPC", !spec.HostIPC},
		{"system-node-critical", spec.PriorityClassName == "system-node-critical"},
		{"tolerates every taint", len(spec.Tolerations) == 1 && spec.Tolerations[0].Operator == corev1.TolerationOpExists && spec.Tolerations[0].Key == ""},
		{"RollingUpdate maxUnavailable 1", ds.Spec.UpdateStrategy.Type == "RollingUpdate" && ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() == 1},
		{"the ServiceAccount of the ClusterRoleBinding", spec.ServiceAccountName == "connaudit-agent"},
		{"memory requested and limited", !c.Resources.Requests.Memory().IsZero() && !c.Resources.Limits.Memory().IsZero() && !c.Resources.Requests.Cpu().IsZero()},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("agent DaemonSet: want %s", c.what)
		}
	}

	nodeName := false
	for _, e := range c.Env {
		if e.Name == "CONNAUDIT_NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("CONNAUDIT_NODE_NAME does not come from spec.nodeName (downward API)")
	}

	grace := 10 * time.Second // the agent's default
	if v, ok := envOf(c, "CONNAUDIT_SHUTDOWN_GRACE"); ok {
		d, err := time.ParseDuration(v)
		must(t, err, "CONNAUDIT_SHUTDOWN_GRACE")
		grace = d
	}
	if tg := spec.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second <= grace {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than CONNAUDIT_SHUTDOWN_GRACE %s", tg, grace)
	}

	// Probes on the agent's health endpoints, at the port it listens on.
	listen, _ := envOf(c, "CONNAUDIT_LISTEN_ADDR")
	host, port, err := net.SplitHostPort(listen)
	must(t, err, "CONNAUDIT_LISTEN_ADDR %q", listen)
	if host != "0.0.0.0" && host != "" {
		t.Errorf("CONNAUDIT_LISTEN_ADDR=%s: the kubelet probes the pod IP; listen on it", listen)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want {
			t.Errorf("no probe on %s", want)
			continue
		}
		if p := containerPort(c, probe.HTTPGet.Port.String()); strconv.Itoa(int(p)) != port {
			t.Errorf("probe %s on port %s (%d); the agent listens on %s", want, probe.HTTPGet.Port.String(), p, port)
		}
	}

	// The mounts: host paths as the agent's configuration names them,
	// read-only except the pins, the spool and /tmp.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	hostMount := func(hostPath string) (corev1.VolumeMount, *corev1.HostPathVolumeSource) {
		for name, v := range volumes {
			if v.HostPath != nil && v.HostPath.Path == hostPath {
				return mounts[name], v.HostPath
			}
		}
		t.Fatalf("no hostPath volume of %s", hostPath)
		return corev1.VolumeMount{}, nil
	}
	for _, m := range []struct {
		hostPath, env string // env: the variable that must name the mount path
		writable      bool
		typ           corev1.HostPathType
	}{
		{"/proc", "CONNAUDIT_HOST_PROC", false, corev1.HostPathDirectory},
		{"/sys/fs/cgroup", "CONNAUDIT_CGROUP_ROOT", false, corev1.HostPathDirectory},
		{"/sys/kernel/tracing", "", false, corev1.HostPathDirectory},
		{"/sys/fs/bpf", "CONNAUDIT_BPF_PIN_DIR", true, corev1.HostPathDirectory},
		{"/var/lib/connaudit/spool", "CONNAUDIT_SPOOL_DIR", true, corev1.HostPathDirectoryOrCreate},
	} {
		mount, hp := hostMount(m.hostPath)
		if mount.ReadOnly == m.writable {
			t.Errorf("hostPath %s mounted readOnly=%v; want %v", m.hostPath, mount.ReadOnly, !m.writable)
		}
		if hp.Type == nil || *hp.Type != m.typ {
			t.Errorf("hostPath %s: type %v; want %s", m.hostPath, hp.Type, m.typ)
		}
		if m.env == "" {
			if mount.MountPath != m.hostPath {
				t.Errorf("hostPath %s mounted at %s; want the same path", m.hostPath, mount.MountPath)
			}
			continue
		}
		v, _ := envOf(c, m.env)
		if m.env == "CONNAUDIT_BPF_PIN_DIR" {
			// The agent's own directory of the host's bpffs.
			if filepath.Dir(v) != mount.MountPath {
				t.Errorf("%s=%q is not a directory of hostPath %s, mounted at %s", m.env, v, m.hostPath, mount.MountPath)
			}
			continue
		}
		if v != mount.MountPath {
			t.Errorf("%s=%q but hostPath %s is mounted at %s", m.env, v, m.hostPath, mount.MountPath)
		}
	}
	// The container's /sys is a read-only sysfs of its own: a runtime can
	// mount only on directories sysfs itself has there (tracefs's), never
	// create a mount point.
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(m.MountPath+"/", "/sys/") && m.MountPath != "/sys/kernel/tracing" {
			t.Errorf("volume %s is mounted at %s, inside the container's read-only sysfs", m.Name, m.MountPath)
		}
	}
	if tmp, ok := volumes[mountAt(c, "/tmp")]; !ok || tmp.EmptyDir == nil {
		t.Error("/tmp is not an emptyDir")
	}
	// The token the gateway reviews: the pod's own, for the gateway's
	// audience only, where CONNAUDIT_EXPORT_TOKEN_FILE reads it.
	tokenVol, ok := volumes[mountAt(c, "/var/run/secrets/connaudit")]
	if !ok || tokenVol.Projected == nil || len(tokenVol.Projected.Sources) != 1 || tokenVol.Projected.Sources[0].ServiceAccountToken == nil ||
		tokenVol.Projected.Sources[0].ServiceAccountToken.Audience != "connaudit" {
		t.Errorf("no projected ServiceAccount token for audience connaudit at /var/run/secrets/connaudit: %+v", tokenVol)
	} else if v, _ := envOf(c, "CONNAUDIT_EXPORT_TOKEN_FILE"); v != "/var/run/secrets/connaudit/"+tokenVol.Projected.Sources[0].ServiceAccountToken.Path {
		t.Errorf("CONNAUDIT_EXPORT_TOKEN_FILE=%q does not name the projected token", v)
	}
	// And the gateway's CA, an optional ConfigMap (TestCollectorGateway).
	if len(spec.Volumes) != 8 {
		t.Errorf("%d volumes; want exactly the seven above and the gateway's CA (a new host mount needs a review)", len(spec.Volumes))
	}
}

// Every container of every overlay runs with a read-only root, no privilege
// escalation and no capability it does not add explicitly, and everything
// but the agent runs as a non-root user.
func TestEveryContainerLocked(t *testing.T) {
	for _, dir := range overlays {
		for name, spec := range render(t, dir).podSpecs() {
			for _, c := range spec.Containers {
				sc := c.SecurityContext
				where := fmt.Sprintf("%s: %s container %s", dir, name, c.Name)
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem, drop ALL", where)
				}
				if name == "DaemonSet/connaudit-agent" {
					continue
				}
				ps := spec.SecurityContext
				if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 10001 || len(sc.Capabilities.Add) != 0 {
					t.Errorf("%s: want runAsNonRoot, uid 10001, no added capability", where)
				}
				if c.ReadinessProbe == nil || c.LivenessProbe == nil {
					t.Errorf("%s: no readiness or liveness probe", where)
				}
			}
		}
	}
}

// The gateway: a StatefulSet whose volume claim holds the persistent queue
// that its configuration names, probed through health_check, behind a
// Service for OTLP gRPC and HTTP.
func TestCollectorGateway(t *testing.T) {
	r := render(t, "k8s/deploy")
	sts := r.statefulSet(t, "connaudit-collector")
	c := sts.Spec.Template.Spec.Containers[0]
	dir, _ := envOf(c, "CONNAUDIT_COLLECTOR_STORAGE_DIR")
	if len(sts.Spec.VolumeClaimTemplates) != 1 || mountAt(c, dir) != sts.Spec.VolumeClaimTemplates[0].Name {
		t.Errorf("the persistent queue directory %q is not the StatefulSet's volume claim", dir)
	}
	var cfg struct {
		Extensions map[string]map[string]any
		Exporters  map[string]struct {
			Headers map[string]string
		}
	}
	must(t, yaml.Unmarshal([]byte(r.configMapData(t, "connaudit-collector", "config.yaml")), &cfg), "parse the gateway configuration")
	health, _ := cfg.Extensions["health_check"]["endpoint"].(string)
	if !strings.HasSuffix(health, ":13133}") {
		t.Errorf("health_check endpoint %q; want port 13133", health)
	}
	for probe, what := range map[*corev1.Probe]string{c.LivenessProbe: "liveness", c.ReadinessProbe: "readiness"} {
		if probe == nil || probe.HTTPGet == nil || containerPort(c, probe.HTTPGet.Port.String()) != 13133 {
			t.Errorf("%s probe is not on health_check (13133)", what)
		}
	}
	fields := cfg.Exporters["otlp_http/victorialogs"].Headers["VL-Stream-Fields"]
	for _, high := range []string{"service.instance.id", "k8s.pod.uid", "container.id", "k8s.pod.label", "host.name", "network.", "connaudit.seq"} {
		if strings.Contains(fields, high) {
			t.Errorf("VL-Stream-Fields %q has the high-cardinality %s", fields, high)
		}
	}
	if !strings.Contains(fields, "k8s.pod.name") {
		t.Errorf("VL-Stream-Fields %q: want a stream per pod (k8s.pod.name)", fields)
	}

	// By default the gateway stores nothing and acknowledges an agent only
	// once VictoriaLogs has the records; components/persistent-queue
	// switches to the fsynced queue on the volume claim.
	queue := gatewayQueue(t, r, "config.yaml")
	if queue["wait_for_result"] != true || queue["storage"] != nil {
		t.Errorf("default gateway sending_queue %v: want wait_for_result and no storage", queue)
	}
	pq := render(t, "k8s/deploy/overlays/persistent-queue")
	merged := gatewayQueue(t, pq, "persistent-queue.yaml")
	if merged["storage"] != "file_storage/queue" || merged["wait_for_result"] != false {
		t.Errorf("persistent-queue sending_queue %v: want storage file_storage/queue without wait_for_result", merged)
	}
	pqc := pq.statefulSet(t, "connaudit-collector").Spec.Template.Spec.Containers[0]
	if !slices.Contains(pqc.Args, "--config=/etc/otelcol-connaudit/persistent-queue.yaml") || !slices.Contains(pqc.Args, "--config=/etc/otelcol-connaudit/config.yaml") {
		t.Errorf("persistent-queue overlay runs the collector with %v: want config.yaml and persistent-queue.yaml", pqc.Args)
	}

	svc := r.service(t, "connaudit-collector")
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["otlp-grpc"] != 4317 || ports["otlp-http"] != 4318 {
		t.Errorf("collector Service ports %v; want otlp-grpc 4317 and otlp-http 4318", ports)
	}
	agent := r.daemonSet(t, "connaudit-agent").Spec.Template.Spec.Containers[0]
	if ep, _ := envOf(agent, "OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "https://connaudit-collector.connaudit.svc:4318" {
		t.Errorf("agent exports to %q; want the collector Service's OTLP/HTTP port, over TLS", ep)
	}
	// The agent trusts the CA the gateway publishes, mounted optional so
	// that the agent starts before the gateway published it.
	ca, _ := envOf(agent, "OTEL_EXPORTER_OTLP_CERTIFICATE")
	var caVol *corev1.Volume
	for _, m := range agent.VolumeMounts {
		if strings.HasPrefix(ca, m.MountPath+"/") {
			for _, v := range r.daemonSet(t, "connaudit-agent").Spec.Template.Spec.Volumes {
				if v.Name == m.Name {
					caVol = &v
				}
			}
		}
	}
	if caVol == nil || caVol.ConfigMap == nil || caVol.ConfigMap.Name != "connaudit-gateway-ca" || caVol.ConfigMap.Optional == nil || !*caVol.ConfigMap.Optional ||
		filepath.Base(ca) != "ca.crt" {
		t.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE=%q: want ca.crt of the optional ConfigMap volume connaudit-gateway-ca, got volume %+v", ca, caVol)
	}
}

// gatewayQueue is the otlp_http/victorialogs exporter's sending_queue in the
// key of the rendered connaudit-collector ConfigMap.
func gatewayQueue(t *testing.T, r rendered, key string) map[string]any {
	t.Helper()
	var cfg struct {
		Exporters map[string]struct {
			SendingQueue map[string]any `json:"sending_queue"`
		}
	}
	must(t, yaml.Unmarshal([]byte(r.configMapData(t, "connaudit-collector", key)), &cfg), "parse the gateway configuration %s", key)
	return cfg.Exporters["otlp_http/victorialogs"].SendingQueue
}

// `kubectl connaudit query` reaches VictoriaLogs through the API server's
// service proxy as services/victorialogs:http in namespace connaudit, in
// every overlay, and that Service selects pods that serve queries on 9428.
func TestVictoriaLogsServiceName(t *testing.T) {
	for _, dir := range overlays {
		r := render(t, dir)
		svc := r.service(t, "victorialogs")
		if svc.Namespace != namespace || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 9428 {
			t.Errorf("%s: Service victorialogs is %s/%v; want namespace connaudit, port http 9428", dir, svc.Namespace, svc.Spec.Ports)
		}
		var selected []string
		for name, spec := range r.podSpecs() {
			if podLabels := r.templateLabels(name); labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
				selected = append(selected, name)
				if containerPort(spec.Containers[0], "http") != 9428 {
					t.Errorf("%s: %s does not serve http on 9428", dir, name)
				}
			}
		}
		if len(selected) != 1 {
			t.Errorf("%s: Service victorialogs selects %v; want one workload", dir, selected)
		}
	}
}

// The cluster overlay: two or more storage nodes, and front ends whose
// -storageNode lists exactly those nodes; the collector writes to vlinsert,
// queries go to vlselect.
func TestVictoriaLogsClusterOverlay(t *testing.T) {
	r := render(t, "k8s/deploy/overlays/victorialogs-cluster")
	storage := r.statefulSet(t, "vlstorage")
	replicas := int(*storage.Spec.Replicas)
	if replicas < 2 {
		t.Fatalf("vlstorage has %d replicas; want at least 2", replicas)
	}
	var want []string
	for i := 0; i < replicas; i++ {
		want = append(want, fmt.Sprintf("vlstorage-%d.%s.connaudit.svc:9428", i, storage.Spec.ServiceName))
	}
	specs := r.podSpecs()
	for _, front := range []string{"Deployment/vlinsert", "Deployment/vlselect"} {
		spec, ok := specs[front]
		if !ok {
			t.Fatalf("no %s", front)
		}
		if got := flagValue(spec.Containers[0].Args, "-storageNode"); got != strings.Join(want, ",") {
			t.Errorf("%s: -storageNode=%s; want %s", front, got, strings.Join(want, ","))
		}
	}
	if _, ok := specs["StatefulSet/victorialogs"]; ok {
		t.Error("the single-node VictoriaLogs is still there")
	}
	col := r.statefulSet(t, "connaudit-collector").Spec.Template.Spec.Containers[0]
	if u, _ := envOf(col, "CONNAUDIT_VICTORIALOGS_URL"); u != "http://vlinsert.connaudit.svc:9428" {
		t.Errorf("collector writes to %q; want vlinsert", u)
	}
	if sel := r.service(t, "victorialogs").Spec.Selector["app.kubernetes.io/name"]; sel != "vlselect" {
		t.Errorf("Service victorialogs selects %q; want vlselect", sel)
	}
}

func (r rendered) templateLabels(workload string) map[string]string {
	kind, name, _ := strings.Cut(workload, "/")
	for _, o := range r.objects {
		switch w := o.(type) {
		case *appsv1.DaemonSet:
			if kind == "DaemonSet" && w.Name == name {
				return w.Spec.Template.Labels
			}
		case *appsv1.StatefulSet:
			if kind == "StatefulSet" && w.Name == name {
				return w.Spec.Template.Labels
			}
		case *appsv1.Deployment:
			if kind == "Deployment" && w.Name == name {
				return w.Spec.Template.Labels
			}
		}
	}
	return nil
}

func containerPort(c corev1.Container, nameOrNumber string) int32 {
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || strconv.Itoa(int(p.ContainerPort)) == nameOrNumber {
			return p.ContainerPort
		}
	}
	return 0
}

// mountAt returns the name of the volume mounted at path.
func mountAt(c corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m.Name
		}
	}
	return ""
}

func flagValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// The NetworkPolicies select the agent's, the gateway's and VictoriaLogs'
// pods by their templates' labels, name ports their containers have, open
// OTLP to the agents only, VictoriaLogs' writes to the gateway only and its
// reads to the API server's address only, metrics to the namespaces
// labelled connaudit.io/scrape, and leave the health ports to the kubelet (a
// pod's own node is always allowed), in the base and in every overlay.
func TestNetworkPolicies(t *testing.T) {
	scrape := map[string]string{"connaudit.io/scrape": "true"}
	const collector, apiServer = "pods:StatefulSet/connaudit-collector", "ipBlock:0.0.0.0/32"
	for _, dir := range overlays {
		r := render(t, dir)
		var policies []*networkingv1.NetworkPolicy
		for _, o := range r.objects {
			if p, ok := o.(*networkingv1.NetworkPolicy); ok {
				policies = append(policies, p)
			}
		}
		// workload → who may reach which port: "pods:<workload>", "scrape"
		// or "ipBlock:<cidr>", comma-separated.
		want := map[string]map[string]string{
			"DaemonSet/connaudit-agent":       {"metrics": "scrape"},
			"StatefulSet/connaudit-collector": {"otlp-grpc": "pods:DaemonSet/connaudit-agent", "otlp-http": "pods:DaemonSet/connaudit-agent", "metrics": "scrape"},
		}
		if strings.Contains(dir, "victorialogs-cluster") {
			want["Deployment/vlinsert"] = map[string]string{"http": collector}
			want["Deployment/vlselect"] = map[string]string{"http": apiServer}
			want["StatefulSet/vlstorage"] = map[string]string{"http": "pods:Deployment/vlinsert,pods:Deployment/vlselect"}
		} else {
			want["StatefulSet/victorialogs"] = map[string]string{"http": apiServer + "," + collector}
		}
		for workload, ports := range want {
			podLabels := r.templateLabels(workload)
			if len(podLabels) == 0 {
				t.Errorf("%s: no %s with pod labels", dir, workload)
				continue
			}
			c := podSpecOf(r, workload).Containers[0]
			got := map[string][]string{}
			selected := false
			for _, p := range policies {
				if sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector); err != nil || !sel.Matches(labels.Set(podLabels)) {
					continue
				}
				selected = true
				if !slices.Equal(p.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
					t.Errorf("%s: %s: policy types %v, want Ingress", dir, p.Name, p.Spec.PolicyTypes)
				}
				for _, rule := range p.Spec.Ingress {
					if len(rule.From) == 0 || len(rule.Ports) == 0 {
						t.Errorf("%s: %s opens ports %v to every source, or every port to %v", dir, p.Name, rule.Ports, rule.From)
					}
					for _, port := range rule.Ports {
						name := port.Port.String()
						if containerPort(c, name) == 0 {
							t.Errorf("%s: %s opens port %s, which %s's container does not have", dir, p.Name, name, workload)
						}
						for _, from := range rule.From {
							switch {
							case from.NamespaceSelector != nil && from.PodSelector == nil && maps.Equal(from.NamespaceSelector.MatchLabels, scrape):
								got[name] = append(got[name], "scrape")
							case from.IPBlock != nil && from.PodSelector == nil && from.NamespaceSelector == nil:
								got[name] = append(got[name], "ipBlock:"+from.IPBlock.CIDR)
							case from.PodSelector != nil && from.NamespaceSelector == nil:
								for w := range want {
									if sel, err := metav1.LabelSelectorAsSelector(from.PodSelector); err == nil && sel.Matches(labels.Set(r.templateLabels(w))) {
										got[name] = append(got[name], "pods:"+w)
									}
								}
							default:
								t.Errorf("%s: %s admits %+v to port %s", dir, p.Name, from, name)
							}
						}
					}
				}
			}
			if !selected {
				t.Errorf("%s: no NetworkPolicy selects %s's pods", dir, workload)
				continue
			}
			gotJoined := map[string]string{}
			for port, from := range got {
				slices.Sort(from)
				gotJoined[port] = strings.Join(slices.Compact(from), ",")
			}
			if !maps.Equal(gotJoined, ports) {
				t.Errorf("%s: %s admits %v, want %v", dir, workload, gotJoined, ports)
			}
		}
	}
}

func podSpecOf(r rendered, workload string) *corev1.PodSpec {
	kind, name, _ := strings.Cut(workload, "/")
	for _, o := range r.objects {
		switch w := o.(type) {
		case *appsv1.DaemonSet:
			if kind == "DaemonSet" && w.Name == name {
				return &w.Spec.Template.Spec
			}
		case *appsv1.StatefulSet:
			if kind == "StatefulSet" && w.Name == name {
				return &w.Spec.Template.Spec
			}
		case *appsv1.Deployment:
			if kind == "Deployment" && w.Name == name {
				return &w.Spec.Template.Spec
			}
		}
	}
	return &corev1.PodSpec{Containers: []corev1.Container{{}}}
}
