// Package sqs is the poller's store for Laravel's SQS queues.
package sqs
