package sqs

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kqueue/kqueue/config"
)

// Connect makes a Store of the app's SQS connection for the queues named
// (their URLs as Laravel builds them), on a client from Dial.
func Connect(ctx context.Context, s *config.LaravelSQS, names []string, log *slog.Logger) (*Store, error) {
	client, err := Dial(ctx, s)
	if err != nil {
		return nil, err
	}
	var qs []Queue
	for _, n := range names {
		qs = append(qs, Queue{Name: n, URL: s.QueueURL(n)})
	}
	return New(Config{Client: client, Queues: qs, Logger: log}), nil
}

// Dial makes a client for the app's SQS connection: its region and
// endpoint, and its key and secret when it names them; otherwise the
// credentials come from the usual AWS sources (environment, shared files,
// web identity, the ECS or EC2 instance role). Nothing is sent yet.
func Dial(ctx context.Context, s *config.LaravelSQS) (*sqs.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(longPoll + callTimeout)),
		// The poller tries again every second: a call retried inside
		// would only hide an outage longer.
		awsconfig.WithRetryer(func() aws.Retryer { return retry.AddWithMaxAttempts(retry.NewStandard(), 2) }),
	}
	if s.Region != nil {
		opts = append(opts, awsconfig.WithRegion(*s.Region))
	}
	if s.Key != nil && s.Secret != nil {
		token := ""
		if s.Token != nil {
			token = *s.Token
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(*s.Key, *s.Secret, token)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("configure the SQS client: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // an endpoint of its own names none
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if s.Endpoint != nil {
			o.BaseEndpoint = aws.String(*s.Endpoint)
		}
	}), nil
}
