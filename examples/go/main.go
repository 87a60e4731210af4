// speechmesh-go: a small Go client of speechmesh's ASR service, built on the stubs that
// `buf generate` writes from protos/ (see examples/go/README.md for how to build it).
//
//	speechmesh-go recognize [flags] FILE      transcribe a recording (unary Recognize)
//	speechmesh-go stream [flags] FILE.wav     stream a WAV file (bidirectional StreamingRecognize)
//	speechmesh-go models [flags]              list the ASR models (ListModels)
//
// Every command talks to the gateway (default $SPEECHMESH, else localhost:8080) or to the ASR
// service itself. A failed call prints its gRPC status code, message and details, and exits 1;
// a usage error exits 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	asrv1 "github.com/speechmesh/speechmesh/gen/go/speechmesh/asr/v1"
)

// chunkSeconds is how much audio each StreamingRecognize message carries.
const chunkSeconds = 0.1

// options are the flags every command takes.
type options struct {
	addr     string
	key      string
	useTLS   bool
	caCert   string
	insecure bool
	model    string
	language string
	timeout  time.Duration
}

func (o *options) register(flags *flag.FlagSet) {
	flags.StringVar(&o.addr, "addr", envOr("SPEECHMESH", "localhost:8080"), "gateway or ASR service, HOST:PORT")
	flags.StringVar(&o.key, "key", os.Getenv("SPEECHMESH_API_KEY"), "API key, sent as the x-api-key header (default $SPEECHMESH_API_KEY)")
	flags.BoolVar(&o.useTLS, "tls", false, "connect with TLS, trusting the system's certificate authorities")
	flags.StringVar(&o.caCert, "cacert", "", "connect with TLS, trusting the CA certificate in this PEM file")
	flags.BoolVar(&o.insecure, "insecure", false, "connect with TLS without verifying the server's certificate")
	flags.StringVar(&o.model, "model", "", "model name or source (default: the service's default)")
	flags.StringVar(&o.language, "language", "", "BCP-47 language spoken, e.g. en (default: detect)")
	flags.DurationVar(&o.timeout, "timeout", 5*time.Minute, "deadline of the call")
}

func main() {
	commands := map[string]func(args []string) error{
		"recognize": recognize,
		"stream":    stream,
		"models":    models,
	}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: speechmesh-go recognize|stream|models [flags] [FILE]")
		fmt.Fprintln(os.Stderr, "       speechmesh-go COMMAND -h   lists the flags")
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		os.Exit(report(err))
	}
}

// -- commands ----------------------------------------------------------------------------------

func recognize(args []string) error {
	var o options
	flags := flag.NewFlagSet("recognize", flag.ExitOnError)
	o.register(flags)
	words := flags.Bool("words", false, "print each word's times too")
	file := parse(flags, args, "FILE")

	audio, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	conn, ctx, cancel, err := o.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	defer cancel()

	response, err := asrv1.NewAsrServiceClient(conn).Recognize(ctx, &asrv1.RecognizeRequest{
		Config: &asrv1.RecognitionConfig{
			Model:                 o.model,
			LanguageCode:          o.language,
			EnableWordTimeOffsets: *words,
		},
		Audio:     audio, // any container the service reads: WAV, FLAC, MP3, OGG, ...
		RequestId: fmt.Sprintf("go-%d", os.Getpid()),
	})
	if err != nil {
		return err
	}
	fmt.Printf("transcript  %s\n", response.Transcript)
	fmt.Printf("language    %s (probability %.2f)\n", response.LanguageCode, response.LanguageProbability)
	fmt.Printf("audio       %.2f s, model %s\n", seconds(response.AudioDuration), response.Model)
	for _, segment := range response.Segments {
		fmt.Printf("segment     %s  %s\n", span(segment.StartOffset, segment.EndOffset), segment.Text)
		for _, word := range segment.Words {
			fmt.Printf("  word      %s  %s\n", span(word.StartOffset, word.EndOffset), word.Word)
		}
	}
	return nil
}

func stream(args []string) error {
	var o options
	flags := flag.NewFlagSet("stream", flag.ExitOnError)
	o.register(flags)
	fast := flags.Bool("fast", false, "send the audio as fast as the connection takes it (default: in real time, as a microphone would)")
	file := parse(flags, args, "FILE.wav")

	audio, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	byteRate, err := wavByteRate(audio)
	if err != nil {
		return err
	}
	chunk := int(float64(byteRate) * chunkSeconds)
	if chunk < 1024 {
		chunk = 1024
	}
	conn, ctx, cancel, err := o.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	defer cancel()

	call, err := asrv1.NewAsrServiceClient(conn).StreamingRecognize(ctx)
	if err != nil {
		return err
	}
	started := time.Now()

	// Send in the background: the configuration first, then the WAV file as it is (the service
	// reads the sample rate from its header, so no audio_format), then half-close: "finish what
	// you have and end". A failed Send means the call has ended; Recv below says why.
	go func() {
		first := &asrv1.StreamingRecognizeRequest{
			StreamingRequest: &asrv1.StreamingRecognizeRequest_StreamingConfig{
				StreamingConfig: &asrv1.StreamingRecognitionConfig{
					Config: &asrv1.RecognitionConfig{
						Model:                 o.model,
						LanguageCode:          o.language,
						EnableWordTimeOffsets: true,
					},
					InterimResults:            true,
					EnableVoiceActivityEvents: true,
					RequestId:                 fmt.Sprintf("go-%d", os.Getpid()),
				},
			},
		}
		if call.Send(first) != nil {
			return
		}
		for offset := 0; offset < len(audio); offset += chunk {
			end := offset + chunk
			if end > len(audio) {
				end = len(audio)
			}
			message := &asrv1.StreamingRecognizeRequest{
				StreamingRequest: &asrv1.StreamingRecognizeRequest_Audio{Audio: audio[offset:end]},
			}
			if call.Send(message) != nil {
				return
			}
			if !*fast {
				time.Sleep(time.Duration(chunkSeconds * float64(time.Second)))
			}
		}
		call.CloseSend()
	}()

	finals := 0
	for {
		response, err := call.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		at := time.Since(started).Seconds()
		switch item := response.StreamingResponse.(type) {
		case *asrv1.StreamingRecognizeResponse_SpeechEvent:
			kind := map[asrv1.SpeechActivityEvent_Type]string{
				asrv1.SpeechActivityEvent_TYPE_SPEECH_BEGIN: "begins",
				asrv1.SpeechActivityEvent_TYPE_SPEECH_END:   "ends",
			}[item.SpeechEvent.Type]
			if kind == "" {
				kind = "ended (single utterance)"
			}
			fmt.Printf("%5.2f speech %s at %.3f s\n", at, kind, seconds(item.SpeechEvent.Offset))
		case *asrv1.StreamingRecognizeResponse_Result:
			result := item.Result
			if result.IsFinal {
				finals++
				fmt.Printf("%5.2f FINAL    %s  %s [%s]\n", at, span(result.StartOffset, result.EndOffset),
					result.Transcript, result.LanguageCode)
			} else {
				fmt.Printf("%5.2f interim  [%s] %s\n", at, result.StableTranscript, result.Transcript)
			}
		}
	}
	fmt.Printf("%5.2f done: %d final result(s)\n", time.Since(started).Seconds(), finals)
	return nil
}

func models(args []string) error {
	var o options
	flags := flag.NewFlagSet("models", flag.ExitOnError)
	o.register(flags)
	parse(flags, args, "")

	conn, ctx, cancel, err := o.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	defer cancel()

	response, err := asrv1.NewAsrServiceClient(conn).ListModels(ctx, &asrv1.ListModelsRequest{})
	if err != nil {
		return err
	}
	for _, model := range response.Models {
		mark := ""
		if model.Default {
			mark = "  (default)"
		}
		fmt.Printf("%-24s %-12s %-20s %s%s\n", model.Name, model.Engine, model.State, model.Device, mark)
	}
	return nil
}

// -- connection --------------------------------------------------------------------------------

// connect dials the target and returns a context for one call: its deadline, and the API key in
// the metadata the gateway reads (`x-api-key`; `authorization: Bearer KEY` works too).
func (o *options) connect() (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	// Accept what curl users type too: http://host:port.
	addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(o.addr, "http://"), "https://"), "/")
	var security grpc.DialOption
	if o.useTLS || o.caCert != "" || o.insecure {
		config := &tls.Config{InsecureSkipVerify: o.insecure}
		if o.caCert != "" {
			pem, err := os.ReadFile(o.caCert)
			if err != nil {
				return nil, nil, nil, err
			}
			config.RootCAs = x509.NewCertPool()
			if !config.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nil, nil, fmt.Errorf("%s: no PEM certificate in it", o.caCert)
			}
		}
		security = grpc.WithTransportCredentials(credentials.NewTLS(config))
	} else {
		// grpc-go 1.33 (Debian bookworm's) has no credentials/insecure package yet (1.34+).
		security = grpc.WithInsecure()
	}
	conn, err := grpc.Dial(addr, security)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	if o.key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", o.key)
	}
	return conn, ctx, cancel, nil
}

// -- output ------------------------------------------------------------------------------------

// codeNames are the canonical names of the gRPC status codes (grpc-go prints "NotFound").
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// report prints an error on standard error, a gRPC status as "CODE (number): message" and its
// google.rpc details, and returns the exit code.
func report(err error) int {
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(os.Stderr, "speechmesh-go: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "speechmesh-go: %s (%d): %s\n", codeNames[st.Code()], st.Code(), st.Message())
	// The details say which field, resource or wait; their descriptions often repeat the message.
	describe := func(description string) string {
		if description == "" || description == st.Message() {
			return ""
		}
		return ": " + description
	}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.BadRequest:
			for _, violation := range d.FieldViolations {
				fmt.Fprintf(os.Stderr, "  field %s%s\n", violation.Field, describe(violation.Description))
			}
		case *errdetails.ResourceInfo:
			fmt.Fprintf(os.Stderr, "  resource %s %q%s\n", d.ResourceType, d.ResourceName, describe(d.Description))
		case *errdetails.RetryInfo:
			fmt.Fprintf(os.Stderr, "  retry after %.1f s\n", seconds(d.RetryDelay))
		case *errdetails.ErrorInfo:
			fmt.Fprintf(os.Stderr, "  reason %s (%s)\n", d.Reason, d.Domain)
		}
	}
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "connection refused") {
		fmt.Fprintln(os.Stderr, "  is the gateway running? `make run` (or `speechmesh up --offline`) starts it")
	}
	return 1
}

// seconds is a Duration's value in seconds (0 when unset).
func seconds(d *durationpb.Duration) float64 {
	if d == nil {
		return 0
	}
	return d.AsDuration().Seconds()
}

// span prints a time range such as "0.36-0.84 s".
func span(start, end *durationpb.Duration) string {
	return fmt.Sprintf("%.2f-%.2f s", seconds(start), seconds(end))
}

// -- helpers -----------------------------------------------------------------------------------

// parse parses a command's flags and returns its one positional argument (none when name is
// empty); a usage error exits 2.
func parse(flags *flag.FlagSet, args []string, name string) string {
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: speechmesh-go %s [flags] %s\n", flags.Name(), name)
		flags.PrintDefaults()
	}
	flags.Parse(args)
	want := 1
	if name == "" {
		want = 0
	}
	if flags.NArg() != want {
		flags.Usage()
		os.Exit(2)
	}
	return flags.Arg(0)
}

// wavByteRate reads the bytes of audio per second from a WAV file's "fmt " chunk.
func wavByteRate(data []byte) (int, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return 0, errors.New("not a WAV file (RIFF/WAVE header expected); convert it first, e.g. ffmpeg -i IN -ar 16000 -ac 1 OUT.wav")
	}
	for offset := 12; offset+8 <= len(data); {
		id := string(data[offset : offset+4])
		size := int(binary.LittleEndian.Uint32(data[offset+4 : offset+8]))
		if id == "fmt " && offset+20 <= len(data) {
			return int(binary.LittleEndian.Uint32(data[offset+16 : offset+20])), nil
		}
		offset += 8 + size + size%2
	}
	return 0, errors.New("WAV file without a fmt chunk")
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
