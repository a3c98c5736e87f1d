// Command floor is the leanest out-of-process OnDelete rollout: a client-go pod informer
// (protobuf) and uid-preconditioned deletes, nothing else — no health gate beyond Ready,
// no state, no lease, no events, no start-up beyond the client. It keeps at most
// -max-unavailable nodes without a Ready pod, counting a node from its old pod's delete
// until its new pod is Ready, as dsroll does.
//
// bench/rollout_bench.py --floor times it beside dsroll and the native RollingUpdate: what
// any orchestrator that deletes DaemonSet pods from outside the cluster pays on the same
// control plane, so dsroll's own overhead is dsroll's time over this one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

const revisionLabel = "controller-revision-hash"

func ready(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// dirty collects the nodes whose pods changed since the loop last looked.
type dirty struct {
	mu    sync.Mutex
	nodes map[string]bool
	wake  chan struct{}
}

func (d *dirty) mark(obj interface{}) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	d.mu.Lock()
	d.nodes[pod.Spec.NodeName] = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dirty) take() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	taken := d.nodes
	d.nodes = map[string]bool{}
	return taken
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file")
	kubeContext := flag.String("context", "", "kubeconfig context")
	namespace := flag.String("namespace", "", "the DaemonSet's namespace")
	name := flag.String("daemonset", "", "the DaemonSet (updateStrategy OnDelete)")
	budget := flag.Int("max-unavailable", 10, "nodes without a Ready pod at once, at most")
	gather := flag.Duration("gather", 20*time.Millisecond, "how long events gather between two looks")
	flag.Parse()
	started := time.Now()
	if err := run(*kubeconfig, *kubeContext, *namespace, *name, *budget, *gather); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Printf("%.3f\n", time.Since(started).Seconds())
}

func run(kubeconfig, kubeContext, namespace, name string, budget int, gather time.Duration) error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// The controller makes the new template's ControllerRevision once it observes it.
	var ds *appsv1.DaemonSet
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ds, err = client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ds.Status.ObservedGeneration >= ds.Generation {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s/%s: the controller did not observe generation %d in 30s", namespace, name, ds.Generation)
		}
	}
	selector := metav1.FormatLabelSelector(ds.Spec.Selector)
	revisions, err := client.AppsV1().ControllerRevisions(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	var newest *appsv1.ControllerRevision
	for i := range revisions.Items {
		if newest == nil || revisions.Items[i].Revision > newest.Revision {
			newest = &revisions.Items[i]
		}
	}
	if newest == nil {
		return fmt.Errorf("%s/%s has no ControllerRevision", namespace, name)
	}
	target := newest.Labels[revisionLabel]

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	informer := factory.Core().V1().Pods().Informer()
	if err := informer.AddIndexers(cache.Indexers{"node": func(obj interface{}) ([]string, error) {
		return []string{obj.(*corev1.Pod).Spec.NodeName}, nil
	}}); err != nil {
		return err
	}
	changed := &dirty{nodes: map[string]bool{}, wake: make(chan struct{}, 1)}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed.mark,
		UpdateFunc: func(_, obj interface{}) { changed.mark(obj) },
		DeleteFunc: changed.mark,
	}); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go informer.Run(stop)
	if !cache.WaitForCacheSync(stop, informer.HasSynced) {
		return fmt.Errorf("the pod informer did not sync")
	}

	order := informer.GetIndexer().ListIndexFuncValues("node") // the nodes to update, in name order
	sort.Strings(order)
	deleted := map[string]bool{}     // old pod deleted, new pod not Ready yet
	unavailable := map[string]bool{} // no Ready pod, or deleted by us and not done
	old := map[string]*corev1.Pod{}  // a live, Ready pod not on the target revision
	look := func(node string) {
		pods, _ := informer.GetIndexer().ByIndex("node", node)
		var newReady, oldReady bool
		var oldPod *corev1.Pod
		for _, obj := range pods {
			pod := obj.(*corev1.Pod)
			current := pod.Labels[revisionLabel] == target
			if current && ready(pod) {
				newReady = true
			}
			if !current && pod.DeletionTimestamp == nil {
				oldPod, oldReady = pod, ready(pod)
			}
		}
		delete(old, node)
		switch {
		case newReady:
			delete(deleted, node)
			delete(unavailable, node)
		case deleted[node] || !oldReady:
			unavailable[node] = true
		default:
			delete(unavailable, node)
			old[node] = oldPod
		}
	}
	for _, node := range order {
		look(node)
	}
	changed.take()
	next := 0 // order[:next] have had their old pod deleted, or were left alone
	for {
		for node := range changed.take() {
			look(node)
		}
		if next == len(order) && len(deleted) == 0 {
			return nil // every node's old pod deleted, or left alone, and every new pod Ready
		}
		for next < len(order) && len(unavailable) < budget {
			node := order[next]
			next++
			pod, ok := old[node]
			if !ok {
				continue // updated already, or its pod is not Ready: left alone (a floor, not a product)
			}
			deleted[node], unavailable[node] = true, true
			delete(old, node)
			uid := pod.UID
			go func(pod string, uid types.UID) {
				opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
				_ = client.CoreV1().Pods(namespace).Delete(ctx, pod, opts)
			}(pod.Name, uid)
		}
		time.Sleep(gather)
		select {
		case <-changed.wake:
		case <-time.After(time.Second):
		}
	}
}
