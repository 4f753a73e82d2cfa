package payload

import (
	"errors"
	"reflect"
	"testing"
)

// sample is PHP 8.2's serialize() of an object with public, protected and
// private scalars, nested arrays, a nested object and a tricky string.
const sample = "O:1:\"J\":8:{s:8:\"isolated\";b:1;s:12:\"\x00*\x00maxMemory\";i:64;s:6:\"\x00J\x00cpu\";i:20;s:7:\"timeout\";N;s:4:\"list\";a:2:{i:0;i:1;s:1:\"a\";a:1:{i:0;d:2.5;}}s:1:\"o\";O:11:\"ArrayObject\":4:{i:0;i:0;i:1;a:1:{i:0;i:1;}i:2;a:0:{}i:3;N;}s:1:\"s\";s:5:\"x\"y;}\";s:1:\"f\";d:1.5;}"

// laravelCommand is Laravel 8's serialize() of a fixture job.
const laravelCommand = `O:15:"App\Jobs\Record":11:{s:3:"tag";s:2:"ok";s:3:"job";N;s:10:"connection";N;s:5:"queue";N;s:15:"chainConnection";N;s:10:"chainQueue";N;s:19:"chainCatchCallbacks";N;s:5:"delay";N;s:11:"afterCommit";N;s:10:"middleware";a:0:{}s:7:"chained";a:0:{}}`

func TestReadCommand(t *testing.T) {
	t.Parallel()
	o, err := ReadCommand([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{
		"isolated": true, "maxMemory": int64(64), "cpu": int64(20), "timeout": nil,
		"list": []Value(nil), "s": `x"y;}`, "f": 1.5,
	}
	if o.Class != "J" || !reflect.DeepEqual(o.Props, want) {
		t.Errorf("got %s %#v\nwant %#v", o.Class, o.Props, want)
	}

	o, err = ReadCommand([]byte(laravelCommand))
	if err != nil {
		t.Fatal(err)
	}
	if o.Class != `App\Jobs\Record` || o.Props["tag"] != "ok" || len(o.Props) != 11 {
		t.Errorf("got %s %#v", o.Class, o.Props)
	}
}

func TestReadCommandErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"",
		"s:1:\"a\";",
		laravelCommand[:40],
		`O:1:"J":1:{s:1:"a";i:x;}`,
		`O:1:"J":1:{s:9:"a";i:1;}`,
		`O:1:"J":1:{b:1;i:1;}`,
		`O:1:"J":1:{s:1:"a";q:1;}`,
		`O:1:"J":0:{}extra`,
		`O:1:"J":99999999999:{}`,
	} {
		if _, err := ReadCommand([]byte(s)); !errors.Is(err, ErrSerialized) {
			t.Errorf("ReadCommand(%q) = %v, want ErrSerialized", s, err)
		}
	}
}

func FuzzReadCommand(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(laravelCommand))
	f.Add([]byte(`O:1:"J":1:{s:1:"e";E:7:"Suit:Up";}`))
	f.Add([]byte(`O:1:"J":1:{s:1:"c";C:3:"Foo":2:{ab}}`))
	f.Fuzz(func(t *testing.T, s []byte) {
		o, err := ReadCommand(s)
		if err != nil {
			if !errors.Is(err, ErrSerialized) {
				t.Fatalf("error %v does not wrap ErrSerialized", err)
			}
			return
		}
		if o == nil || o.Props == nil {
			t.Fatal("nil object without an error")
		}
	})
}

func BenchmarkReadCommand(b *testing.B) {
	raw := []byte(laravelCommand)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadCommand(raw); err != nil {
			b.Fatal(err)
		}
	}
}
