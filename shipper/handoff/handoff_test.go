package handoff

import "testing"

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := Load(dir); ok || err != nil {
		t.Fatalf("empty dir: ok %v err %v", ok, err)
	}
	want := State{Instance: "i-1", Seq: 42, Chain: "ab"}
	if err := Save(dir, want); err != nil {
		t.Fatal(err)
	}
	want.Seq = 43
	if err := Save(dir, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := Load(dir)
	if !ok || err != nil || got != want {
		t.Fatalf("got %+v ok %v err %v, want %+v", got, ok, err, want)
	}
}
